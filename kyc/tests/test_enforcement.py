"""The user's tier is enforced by the transfer and withdrawal services: limits per rolling
24 hours in the reference currency, the fiat switch, and a refusal changes nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.tests.helpers import enable_otp
from blockchain.models import Withdrawal
from blockchain.services import withdrawal_cancel
from blockchain.tests.conftest import request_withdrawal
from kootabase.errors import ServiceError
from kyc.models import KycTier
from kyc.services import kyc_check_withdrawal
from kyc.tests.conftest import D, client_of, trade_at
from kyc.tests.helpers import kyc_verified
from wallets.models import Transfer, TransferStatus
from wallets.services import transfer_create
from wallets.tests.factories import fund

pytestmark = pytest.mark.django_db


def send(sender, recipient, amount: str, currency: str = "USDT", key: str = "t-1") -> Transfer:
    return transfer_create(
        sender=sender, recipient_email=recipient.email, currency_code=currency, amount=D(amount), idempotency_key=key
    )


def refused(call, code: str) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call()
    assert caught.value.code == code, caught.value.code
    return caught.value


# --- Transfers ------------------------------------------------------------------------


def test_tier_0_transfers_stop_at_its_24h_limit_and_the_refusal_changes_nothing(alice, bob, unchanged):
    send(alice, bob, "600", key="a")
    send(alice, bob, "400", key="b")  # exactly the limit: allowed
    with unchanged():
        error = refused(lambda: send(alice, bob, "0.000001", key="c"), "kyc_limit_exceeded")
    assert error.status == 403
    assert error.details == {
        "tier": 0,
        "limit": "1000",
        "used": "1000",
        "amount": "0.000001",
        "reference_currency": "USDT",
    }
    assert Transfer.objects.filter(sender=alice).count() == 2


def test_a_limit_edited_after_the_tiers_were_loaded_applies_to_the_next_transfer(alice, bob, unchanged):
    send(alice, bob, "600", key="a")  # the tiers are loaded now
    tier = KycTier.objects.get(level=0)
    tier.transfer_limit_24h = D("700")
    tier.save()  # as the back office saves it
    with unchanged():
        error = refused(lambda: send(alice, bob, "200", key="b"), "kyc_limit_exceeded")
    assert error.details["limit"] == "700"


def test_other_currencies_count_at_the_last_trade_price(alice, bob, eth_at_2000, unchanged):
    send(alice, bob, "0.3", currency="ETH", key="a")  # 600 USDT
    send(alice, bob, "300", key="b")  # 900 USDT in all
    with unchanged():
        error = refused(lambda: send(alice, bob, "0.05005", currency="ETH", key="c"), "kyc_limit_exceeded")
    assert (error.details["used"], error.details["amount"]) == ("900", "100.1")
    send(alice, bob, "0.05", currency="ETH", key="d")  # 100 USDT: the limit exactly


def test_a_currency_without_a_price_is_refused_not_guessed(alice, bob, unchanged):
    with unchanged():
        error = refused(lambda: send(alice, bob, "0.001", currency="ETH"), "kyc_price_unavailable")
    assert error.status == 409
    assert error.details == {"currency": "ETH", "reference_currency": "USDT"}


def test_a_tier_without_limits_needs_no_price(alice, bob):
    kyc_verified(alice, level=3)
    send(alice, bob, "90", currency="ETH")
    assert Transfer.objects.get().amount == D(90)


def test_a_higher_tier_has_a_higher_limit(alice, bob):
    kyc_verified(alice, level=1)
    send(alice, bob, "10000", key="a")
    refused(lambda: send(alice, bob, "1", key="b"), "kyc_limit_exceeded")


def test_the_window_is_a_rolling_24_hours(alice, bob):
    first = send(alice, bob, "1000", key="a")
    refused(lambda: send(alice, bob, "1", key="b"), "kyc_limit_exceeded")
    Transfer.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    send(alice, bob, "1000", key="c")


def test_a_transfer_compliance_rejected_does_not_count(alice, bob):
    first = send(alice, bob, "1000", key="a")
    refused(lambda: send(alice, bob, "1", key="b"), "kyc_limit_exceeded")
    Transfer.objects.filter(pk=first.pk).update(status=TransferStatus.REJECTED)  # as aml.services leaves it
    send(alice, bob, "1000", key="c")


def test_what_others_send_does_not_count_against_me(alice, bob):
    send(bob, alice, "1000", key="a")
    send(alice, bob, "1000", key="a")


def test_a_replayed_transfer_returns_the_first_even_at_the_limit(alice, bob):
    first = send(alice, bob, "1000", key="a")
    assert send(alice, bob, "1000", key="a").pk == first.pk
    assert Transfer.objects.count() == 1


def test_fiat_needs_a_tier_that_allows_it(alice, bob, usd, unchanged):
    fund(alice, usd, "500")
    with unchanged():
        error = refused(lambda: send(alice, bob, "10", currency="USD"), "kyc_fiat_not_allowed")
    assert (error.status, error.details) == (403, {"tier": 0, "currency": "USD"})
    kyc_verified(alice, level=1)
    # Allowed now, and valued like any currency: USD has no market with USDT here.
    refused(lambda: send(alice, bob, "10", currency="USD"), "kyc_price_unavailable")
    kyc_verified(alice, level=3)
    send(alice, bob, "10", currency="USD")


def test_the_transfer_api_answers_403_with_the_details(alice, bob, unchanged):
    send(alice, bob, "999")
    body = {"recipient": bob.email, "currency": "USDT", "amount": "2", "idempotency_key": "api-1"}
    with unchanged():
        response = client_of(alice).post("/api/v1/transfers", body, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "kyc_limit_exceeded"
    assert response.json()["details"]["used"] == "999"


# --- Withdrawals ----------------------------------------------------------------------


@pytest.fixture
def withdrawer(alice, network):
    enable_otp(alice)
    return alice


def withdraw(user, amount: str, currency: str = "USDT", key: str = "w-1") -> Withdrawal:
    return request_withdrawal(user, currency=currency, amount=amount, key=key).withdrawal


def test_tier_0_withdrawals_count_amount_and_fee(withdrawer, unchanged):
    first = withdraw(withdrawer, "600", key="a")  # + 1 USDT fee
    with unchanged():
        error = refused(lambda: withdraw(withdrawer, "399", key="b"), "kyc_limit_exceeded")  # 601 + 400
    assert error.details == {"tier": 0, "limit": "1000", "used": "601", "amount": "400", "reference_currency": "USDT"}
    withdraw(withdrawer, "398", key="c")  # 601 + 399
    refused(lambda: withdraw(withdrawer, "10", key="d"), "kyc_limit_exceeded")
    withdrawal_cancel(user=withdrawer, withdrawal_id=first.pk)  # a cancelled withdrawal took nothing out
    withdraw(withdrawer, "500", key="e")


def test_withdrawals_and_transfers_have_separate_limits(withdrawer, bob):
    send(withdrawer, bob, "1000")
    withdraw(withdrawer, "999")


def test_withdrawals_value_other_currencies_and_need_a_price(withdrawer, unchanged):
    with unchanged():
        refused(lambda: withdraw(withdrawer, "0.5", currency="ETH"), "kyc_price_unavailable")
    trade_at("1000")
    withdraw(withdrawer, "0.5", currency="ETH", key="a")  # (0.5 + 0.001 fee) x 1000 = 501
    error = refused(lambda: withdraw(withdrawer, "0.5", currency="ETH", key="b"), "kyc_limit_exceeded")
    assert (error.details["used"], error.details["amount"]) == ("501", "501")


def test_the_withdrawal_check_refuses_fiat_below_its_tier(alice, usd):
    with transaction.atomic():
        refused(lambda: kyc_check_withdrawal(user=alice, currency=usd, amount=Decimal(1)), "kyc_fiat_not_allowed")
    kyc_verified(alice, level=3)
    with transaction.atomic():
        kyc_check_withdrawal(user=alice, currency=usd, amount=Decimal(1))
