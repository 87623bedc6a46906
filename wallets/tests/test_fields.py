"""Money fields: exact storage on every backend, and the API's one amount parser."""

from decimal import Decimal

import pytest
from django.db import connection
from rest_framework import serializers

from wallets.api.fields import AmountField
from wallets.models import LedgerAccount, MoneyField
from wallets.services import ledger_accounts_ensure
from wallets.tests.factories import CurrencyFactory, UserFactory


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    [
        "0",
        "0.000000000000000001",
        "-0.000000000000000001",
        "999999999999999999.999999999999999999",
        "-999999999999999999.999999999999999999",
        "123456789012345678.123456789012345678",
    ],
)
def test_money_round_trips_exactly(value):
    currency = CurrencyFactory(code="EX", precision=18)
    key = (None, currency.pk, "external")
    account = ledger_accounts_ensure(keys=[key])[key]
    LedgerAccount.objects.filter(pk=account.pk).update(balance=Decimal(value))
    assert LedgerAccount.objects.get(pk=account.pk).balance == Decimal(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Decimal("0.0000000000000000001"), "more than 18 decimal places"),
        (Decimal("1000000000000000000"), "out of the range"),
        (Decimal("-1000000000000000000"), "out of the range"),
    ],
)
def test_money_is_refused_rather_than_rounded(value, message):
    with pytest.raises(ValueError, match=message):
        MoneyField().get_db_prep_value(value, connection)


def test_negative_zero_is_stored_as_zero():
    stored = Decimal(str(MoneyField().get_db_prep_value(Decimal("-0"), connection)))
    assert stored == 0 and not stored.is_signed()


@pytest.mark.django_db
def test_a_user_balance_cannot_be_stored_negative_even_by_one_unit():
    from django.db import IntegrityError, transaction

    currency = CurrencyFactory(code="EX", precision=18)
    user = UserFactory()
    key = (user.pk, currency.pk, "available")
    account = ledger_accounts_ensure(keys=[key])[key]
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=account.pk).update(balance=Decimal("-0.000000000000000001"))


class Amounts(serializers.Serializer):
    amount = AmountField()
    fee = AmountField(allow_zero=True, required=False)
    delta = AmountField(allow_negative=True, allow_zero=True, required=False)
    price = AmountField(max_decimal_places=2, required=False)


@pytest.mark.parametrize(
    ("data", "field", "code"),
    [
        ({"amount": "1.5", "fee": "-1"}, "fee", "amount_negative"),
        ({"amount": "1.5", "price": "1.001"}, "price", "amount_precision"),
        ({"amount": "+1"}, "amount", "amount_invalid"),
        ({"amount": "1."}, "amount", "amount_invalid"),
        ({"amount": ".5"}, "amount", "amount_invalid"),
        ({"amount": "0x10"}, "amount", "amount_invalid"),
        ({"amount": "١٢"}, "amount", "amount_invalid"),  # non-ASCII digits
        ({"amount": ["1"]}, "amount", "amount_invalid"),
    ],
)
def test_amount_field_codes(data, field, code):
    s = Amounts(data=data)
    assert not s.is_valid()
    assert s.errors[field][0].code == code


def test_amount_field_options_and_integers():
    s = Amounts(data={"amount": 3, "fee": "0", "delta": "-2.50", "price": "1.10"})
    assert s.is_valid(), s.errors
    assert s.validated_data == {
        "amount": Decimal(3),
        "fee": Decimal(0),
        "delta": Decimal("-2.50"),
        "price": Decimal("1.10"),
    }


def test_amount_field_writes_the_currency_precision():
    class Out(serializers.Serializer):
        value = AmountField(precision_source="currency.precision")

    class Row:
        value = Decimal("1.500000000000000000")

        class currency:
            precision = 8

    assert Out(Row()).data == {"value": "1.50000000"}
