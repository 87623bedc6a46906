"""Blockchain API shapes. Amounts travel as strings with the currency's decimal places."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from blockchain import selectors
from blockchain.models import Deposit, DepositAddress, DepositStatus, Withdrawal, WithdrawalAddress, WithdrawalStatus
from kootabase.api.serializers import InputSerializer
from wallets.api.fields import AmountField


class _ChainFields(serializers.ModelSerializer):
    """Fields every chain transaction shows: where it is and how final."""

    transaction_id = serializers.SerializerMethodField()
    network = serializers.CharField(source="network.name", read_only=True)
    tx_hash = serializers.SerializerMethodField()
    block_number = serializers.SerializerMethodField()
    confirmations = serializers.SerializerMethodField()
    confirmations_required = serializers.IntegerField(source="network.confirmations", read_only=True)
    explorer_url = serializers.SerializerMethodField()

    kind = ""

    def _heads(self) -> dict[int, int]:
        if "heads" not in self.context:
            self.context["heads"] = selectors.network_heads()
        return self.context["heads"]

    def get_transaction_id(self, obj: Any) -> str:
        return f"{self.kind}-{obj.pk}"

    @extend_schema_field(OpenApiTypes.STR)
    def get_tx_hash(self, obj: Any) -> str | None:
        raise NotImplementedError

    @extend_schema_field(OpenApiTypes.INT)
    def get_block_number(self, obj: Any) -> int | None:
        raise NotImplementedError

    def get_confirmations(self, obj: Any) -> int:
        return selectors.confirmations(
            heads=self._heads(), network_id=obj.network_id, block_number=self.get_block_number(obj)
        )

    @extend_schema_field(OpenApiTypes.URI)
    def get_explorer_url(self, obj: Any) -> str | None:
        return obj.network.tx_url(self.get_tx_hash(obj) or "") or None


class DepositSerializer(_ChainFields):
    kind = "deposit"
    currency = serializers.CharField(source="asset.currency.code", read_only=True)
    amount = AmountField(read_only=True, precision_source="asset.currency.precision")
    status = serializers.ChoiceField(choices=DepositStatus.choices, read_only=True)

    class Meta:
        model = Deposit
        fields = (
            "id",
            "transaction_id",
            "currency",
            "network",
            "address",
            "amount",
            "status",
            "tx_hash",
            "log_index",
            "block_number",
            "confirmations",
            "confirmations_required",
            "explorer_url",
            "created_at",
            "credited_at",
        )
        read_only_fields = fields

    def get_tx_hash(self, obj: Deposit) -> str | None:
        return obj.tx_hash

    def get_block_number(self, obj: Deposit) -> int | None:
        return obj.block_number


class WithdrawalSerializer(_ChainFields):
    kind = "withdrawal"
    currency = serializers.CharField(source="currency.code", read_only=True)
    amount = AmountField(read_only=True, precision_source="currency.precision")
    fee = AmountField(read_only=True, allow_zero=True, precision_source="currency.precision")
    status = serializers.ChoiceField(choices=WithdrawalStatus.choices, read_only=True)

    class Meta:
        model = Withdrawal
        fields = (
            "id",
            "transaction_id",
            "idempotency_key",
            "currency",
            "network",
            "address",
            "amount",
            "fee",
            "status",
            "failure_reason",
            "tx_hash",
            "block_number",
            "confirmations",
            "confirmations_required",
            "explorer_url",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def get_tx_hash(self, obj: Withdrawal) -> str | None:
        return obj.tx.mined_hash or obj.tx.tx_hash if obj.tx_id else None

    def get_block_number(self, obj: Withdrawal) -> int | None:
        return obj.tx.block_number if obj.tx_id else None


class DepositAddressSerializer(serializers.ModelSerializer):
    currency = serializers.SerializerMethodField()
    network = serializers.CharField(source="network.name", read_only=True)
    confirmations_required = serializers.IntegerField(source="network.confirmations", read_only=True)
    explorer_url = serializers.SerializerMethodField()

    class Meta:
        model = DepositAddress
        fields = ("currency", "network", "address", "confirmations_required", "explorer_url")
        read_only_fields = fields

    def get_currency(self, obj: DepositAddress) -> str:
        return self.context["currency"]

    @extend_schema_field(OpenApiTypes.URI)
    def get_explorer_url(self, obj: DepositAddress) -> str | None:
        return obj.network.address_url(obj.address) or None


class WithdrawalInput(InputSerializer):
    currency = serializers.CharField(max_length=16)
    network = serializers.CharField(max_length=32, required=False, help_text="Needed when the currency has several.")
    address = serializers.CharField(max_length=128)
    amount = AmountField(help_text="Sent to the address; the network fee is held on top of it.")
    idempotency_key = serializers.RegexField(
        r"^[A-Za-z0-9_.:-]{1,64}$", help_text="Your id for this request; a repeat returns the first withdrawal."
    )
    otp_code = serializers.CharField(max_length=32, required=False, allow_blank=True, help_text="A current 2FA code.")


class ListQuery(InputSerializer):
    currency = serializers.CharField(required=False, max_length=16)
    network = serializers.CharField(required=False, max_length=32)
    status = serializers.CharField(required=False, max_length=16)


class WithdrawalAddressSerializer(serializers.ModelSerializer):
    network = serializers.CharField(source="network.name", read_only=True)
    currency = serializers.CharField(
        source="currency.code", read_only=True, allow_null=True, help_text="null: any currency on the network."
    )
    active = serializers.SerializerMethodField(help_text="Withdrawals may go to it now.")

    class Meta:
        model = WithdrawalAddress
        fields = ("id", "network", "currency", "address", "label", "active", "active_at", "created_at")
        read_only_fields = fields

    def get_active(self, obj: WithdrawalAddress) -> bool:
        return obj.is_active(self.context["now"])


class WithdrawalAddressInput(InputSerializer):
    network = serializers.CharField(max_length=32)
    currency = serializers.CharField(
        max_length=16, required=False, allow_blank=True, help_text="Only this currency may go to it; omit for any."
    )
    address = serializers.CharField(max_length=128)
    label = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    otp_code = serializers.CharField(max_length=32, required=False, allow_blank=True, help_text="A current 2FA code.")


class AddressBookQuery(InputSerializer):
    network = serializers.CharField(required=False, max_length=32)


class AddressBookSettingSerializer(serializers.Serializer):
    only_address_book = serializers.BooleanField(help_text="Withdrawals go only to active address book entries.")
    switch_off_at = serializers.DateTimeField(
        allow_null=True, help_text="When a requested switch-off takes effect; null when none is pending."
    )


class AddressBookSettingInput(InputSerializer):
    only_address_book = serializers.BooleanField()
    otp_code = serializers.CharField(max_length=32, required=False, allow_blank=True, help_text="A current 2FA code.")
