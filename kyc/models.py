"""KYC data.

- ``KycTier``: levels 0-3, each with its requirements, its 24 h withdrawal and transfer
  limits in the reference currency (empty: no limit) and whether fiat may move.
- ``KycProfile``: a user's tier, and the row every KYC check and write of the user locks.
  A user without one is at tier 0; it is created at tier 0 the first time it is needed
  (a withdrawal, a transfer, a submission, a decision).
- ``KycSubmission``: a user's request for a higher tier, ``pending`` until compliance
  approves or rejects it (with a reason). At most one pending per user, kept by the
  database (``pending_user`` is unique and set exactly while pending).
- ``KycDocument``: a file of a submission, in the private storage (``kyc.storage``).

See docs/security.md, "KYC tiers".
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import F, Q

from kyc.storage import private_storage
from kyc.tiers import MAX_LEVEL
from wallets.models import MoneyField


class DocumentKind(models.TextChoices):
    ID_DOCUMENT = "id_document", "Identity document"
    SELFIE = "selfie", "Selfie holding the identity document"
    PROOF_OF_ADDRESS = "proof_of_address", "Proof of address"
    SOURCE_OF_FUNDS = "source_of_funds", "Source of funds"


def _known_kinds(value: Any) -> None:
    if not isinstance(value, list) or any(kind not in DocumentKind.values for kind in value):
        raise ValidationError(f"A list of document kinds: {', '.join(DocumentKind.values)}.")


class KycTier(models.Model):
    level = models.PositiveSmallIntegerField(unique=True, validators=[MaxValueValidator(MAX_LEVEL)])
    name = models.CharField(max_length=64)
    requirements = models.TextField(blank=True, help_text="What a user provides for this tier, as users read it.")
    required_documents = models.JSONField(
        default=list, blank=True, validators=[_known_kinds], help_text="The documents a submission for it carries."
    )
    withdrawal_limit_24h = MoneyField(
        null=True,
        blank=True,
        help_text="Withdrawals (amount + fee) per rolling 24 hours, in the reference currency; empty: no limit.",
    )
    transfer_limit_24h = MoneyField(
        null=True,
        blank=True,
        help_text="Transfers sent per rolling 24 hours, in the reference currency; empty: no limit.",
    )
    fiat_allowed = models.BooleanField(default=False, help_text="Fiat currencies may be withdrawn and transferred.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["level"]
        verbose_name = "KYC tier"
        default_permissions = ("view", "change")
        constraints = [
            models.CheckConstraint(condition=Q(level__lte=MAX_LEVEL), name="kyc_tier_level_max"),
            models.CheckConstraint(
                condition=Q(withdrawal_limit_24h__isnull=True) | Q(withdrawal_limit_24h__gte=0),
                name="kyc_tier_withdrawal_limit_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(transfer_limit_24h__isnull=True) | Q(transfer_limit_24h__gte=0),
                name="kyc_tier_transfer_limit_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"tier {self.level} ({self.name})"


class KycProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="kyc_profile")
    tier = models.ForeignKey(KycTier, to_field="level", db_column="level", on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user_id"]
        verbose_name = "KYC profile"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"KYC of {self.user_id}: tier {self.tier_id}"


class SubmissionStatus(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class KycSubmission(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="kyc_submissions")
    tier = models.ForeignKey(
        KycTier,
        to_field="level",
        db_column="level",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The tier asked for.",
    )
    status = models.CharField(max_length=16, choices=SubmissionStatus.choices, default=SubmissionStatus.PENDING)
    pending_user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        help_text="The user while pending, empty once decided: one pending submission per user.",
    )
    reason = models.CharField(max_length=500, blank=True, help_text="Why it was rejected; the user sees it.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "KYC submission"
        default_permissions = ("view",)
        permissions = [("review_kycsubmission", "Can review KYC submissions and open their documents")]
        constraints = [
            models.CheckConstraint(
                condition=(Q(status=SubmissionStatus.PENDING) & Q(pending_user=F("user")))
                | (~Q(status=SubmissionStatus.PENDING) & Q(pending_user__isnull=True)),
                name="kyc_submission_pending_user",
            ),
            models.CheckConstraint(
                condition=Q(status=SubmissionStatus.PENDING) | Q(decided_at__isnull=False),
                name="kyc_submission_decided_at",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "id"], name="kyc_submission_status"),
            models.Index(fields=["user", "-id"], name="kyc_submission_user"),
        ]

    def __str__(self) -> str:
        return f"KYC submission {self.pk}"


def document_path(document: KycDocument, filename: str) -> str:
    """``kyc/<user id>/<random>.<type>``: nothing of the uploaded name is kept."""
    extension = DOCUMENT_TYPES[document.content_type]
    return f"kyc/{document.submission.user_id}/{uuid.uuid4().hex}.{extension}"


# Accepted content, recognised by the file's first bytes: content type -> file extension.
DOCUMENT_TYPES = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}


class KycDocument(models.Model):
    submission = models.ForeignKey(KycSubmission, on_delete=models.PROTECT, related_name="documents")
    kind = models.CharField(max_length=32, choices=DocumentKind.choices)
    file = models.FileField(storage=private_storage, upload_to=document_path, max_length=200)
    content_type = models.CharField(max_length=32, help_text="Recognised from the content, not from the upload.")
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "KYC document"
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["submission", "kind"], name="kyc_document_kind_once"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of submission {self.submission_id}"
