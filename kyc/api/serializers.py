"""KYC API shapes. Limits and used amounts are decimal strings in the reference currency;
documents are described, never linked: they cannot be downloaded through the API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from kootabase.api.serializers import InputSerializer
from kyc.models import DocumentKind, KycDocument, KycSubmission, KycTier
from kyc.tiers import MAX_LEVEL
from orders.api.serializers import MoneyOut


class KycTierSerializer(serializers.ModelSerializer):
    withdrawal_limit_24h = MoneyOut(allow_null=True, help_text="In the reference currency; null: no limit.")
    transfer_limit_24h = MoneyOut(allow_null=True, help_text="In the reference currency; null: no limit.")
    required_documents = serializers.ListField(child=serializers.ChoiceField(choices=DocumentKind.choices))

    class Meta:
        model = KycTier
        fields = (
            "level",
            "name",
            "requirements",
            "required_documents",
            "withdrawal_limit_24h",
            "transfer_limit_24h",
            "fiat_allowed",
        )
        read_only_fields = fields


class KycDocumentSerializer(serializers.ModelSerializer):
    class Meta:
        model = KycDocument
        fields = ("kind", "content_type", "size", "created_at")
        read_only_fields = fields


class KycSubmissionSerializer(serializers.ModelSerializer):
    level = serializers.IntegerField(source="tier_id", help_text="The tier asked for.")
    reason = serializers.CharField(help_text="Why it was rejected (empty otherwise).")
    documents = KycDocumentSerializer(many=True)

    class Meta:
        model = KycSubmission
        fields = ("id", "level", "status", "reason", "documents", "created_at", "decided_at")
        read_only_fields = fields


class KycStatusSerializer(serializers.Serializer):
    tier = KycTierSerializer()
    next_tier = KycTierSerializer(allow_null=True, help_text="The tier above yours; null at the top.")
    reference_currency = serializers.CharField(help_text="The currency limits are valued in.")
    withdrawal_used_24h = MoneyOut(
        allow_null=True,
        help_text="Withdrawals (amount + fee) of the last 24 hours, valued now; null when one of their "
        "currencies has no price now.",
    )
    transfer_used_24h = MoneyOut(allow_null=True, help_text="Transfers sent in the last 24 hours, valued now.")
    pending_submission = KycSubmissionSerializer(allow_null=True)


def _document_field(kind: DocumentKind) -> serializers.FileField:
    return serializers.FileField(
        required=False,
        allow_empty_file=True,  # the service refuses it with its own code
        max_length=255,
        help_text=f"{kind.label}: a JPEG, PNG or PDF file.",
    )


class KycSubmissionInput(InputSerializer):
    """A multipart form: the tier asked for and one file per document kind."""

    level = serializers.IntegerField(min_value=1, max_value=MAX_LEVEL, help_text="The tier asked for.")
    id_document = _document_field(DocumentKind.ID_DOCUMENT)
    selfie = _document_field(DocumentKind.SELFIE)
    proof_of_address = _document_field(DocumentKind.PROOF_OF_ADDRESS)
    source_of_funds = _document_field(DocumentKind.SOURCE_OF_FUNDS)

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "getlist"):
            repeated = sorted(name for name in data if len(data.getlist(name)) > 1)
            if repeated:
                once = serializers.ErrorDetail("Send this field once.", code="repeated_field")
                raise serializers.ValidationError({name: [once] for name in repeated})
        return super().to_internal_value(data)

    def documents(self) -> dict[str, Any]:
        return {kind: self.validated_data[kind] for kind in DocumentKind.values if kind in self.validated_data}
