from __future__ import annotations

from typing import Any

from rest_framework import serializers

from kootabase.api.serializers import InputSerializer
from wallets import selectors
from wallets.api.fields import AmountField
from wallets.models import AccountKind, Currency, EntryKind, LedgerLeg, Transfer


class CurrencySerializer(serializers.ModelSerializer):
    class Meta:
        model = Currency
        fields = (
            "code",
            "name",
            "kind",
            "precision",
            "deposits_enabled",
            "withdrawals_enabled",
            "trading_enabled",
            "transfers_enabled",
        )
        read_only_fields = fields


class WalletSerializer(serializers.Serializer):
    currency = serializers.CharField(source="currency.code")
    available = AmountField(precision_source="currency.precision")
    locked = AmountField(precision_source="currency.precision")
    total = AmountField(precision_source="currency.precision")


class LedgerLegSerializer(serializers.ModelSerializer):
    time = serializers.DateTimeField(source="entry.created_at")
    kind = serializers.ChoiceField(source="entry.kind", choices=EntryKind.choices)
    account = serializers.ChoiceField(
        source="account.kind", choices=[AccountKind.AVAILABLE, AccountKind.LOCKED], help_text="Which balance moved."
    )
    currency = serializers.CharField(source="account.currency.code")
    amount = AmountField(precision_source="account.currency.precision", help_text="Signed: negative leaves.")
    balance_after = AmountField(precision_source="account.currency.precision")
    reference = serializers.CharField(source="entry.reference")

    class Meta:
        model = LedgerLeg
        fields = ("id", "time", "kind", "account", "currency", "amount", "balance_after", "reference")
        read_only_fields = fields


class LedgerQuery(InputSerializer):
    currency = serializers.CharField(required=False, max_length=16)
    kind = serializers.ChoiceField(required=False, choices=EntryKind.choices)
    since = serializers.DateTimeField(required=False, help_text="From this time on (inclusive), ISO-8601.")
    until = serializers.DateTimeField(required=False, help_text="Before this time (exclusive), ISO-8601.")

    def validate_currency(self, code: str) -> Currency:
        currency = selectors.currency_get(code=code)
        if currency is None:
            raise serializers.ValidationError(f"Unknown currency {code!r}.", code="unknown_currency")
        return currency

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError("since must be before until.", code="time_range_invalid")
        return attrs


class TransferInput(InputSerializer):
    recipient = serializers.EmailField(max_length=254, help_text="The recipient's email.")
    currency = serializers.CharField(max_length=16)
    amount = AmountField()
    idempotency_key = serializers.RegexField(
        r"^[A-Za-z0-9_.:-]{1,64}$",
        max_length=64,
        help_text="Your unique id for this transfer (1-64 of A-Z a-z 0-9 _ . : -). "
        "Sending it again returns the first transfer and moves nothing.",
    )


class TransferSerializer(serializers.ModelSerializer):
    sender = serializers.EmailField(source="sender.email")
    recipient = serializers.EmailField(source="recipient.email")
    currency = serializers.CharField(source="currency.code")
    amount = AmountField(precision_source="currency.precision")

    class Meta:
        model = Transfer
        fields = ("id", "sender", "recipient", "currency", "amount", "idempotency_key", "status", "created_at")
        read_only_fields = fields
