"""KYC writes: enforcing a user's tier on withdrawals and transfers, submissions with their
documents, compliance's decisions, and setting a tier directly.

Locking. Every KYC write and check of a user first locks the user's ``KycProfile`` row
(``SELECT ... FOR UPDATE``; the row is created at tier 0 the first time it is needed), so
a user's withdrawals, transfers, submissions and decisions pass one at a time: a second
request waits until the first has committed and then counts it. It is the profile row and
not the user's row because a transfer's insert takes shared locks on the rows of both its
users (the foreign keys): an exclusive lock on the sender's user row taken after it would
deadlock with an opposite transfer. Nothing references the profile row.

Enforcement. ``kyc_check_withdrawal`` and ``kyc_check_transfer`` run inside the caller's
transaction, before any money moves. After the lock:

- a fiat currency on a tier without ``fiat_allowed``: ``kyc_fiat_not_allowed`` (403);
- with a limit, the request's value plus what the last 24 hours used (both valued as
  ``kyc.selectors`` says) above the limit: ``kyc_limit_exceeded`` (403, details ``tier``,
  ``limit``, ``used``, ``amount``, ``reference_currency``); a currency without a price:
  ``kyc_price_unavailable`` (409). A tier without a limit values nothing.

See docs/security.md, "KYC tiers".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import IO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from audit import actions
from audit.services import audit_record
from kootabase.errors import Conflict, NotFound, PermissionDenied, ServiceError
from kootabase.statements import Statement
from kyc import selectors
from kyc.models import DOCUMENT_TYPES, DocumentKind, KycDocument, KycProfile, KycSubmission, SubmissionStatus
from kyc.tiers import MAX_LEVEL
from wallets.models import Currency, Transfer

# --- Enforcement ----------------------------------------------------------------------


def _kyc_lock(user: User) -> KycProfile:
    """The user's profile, locked until the caller's transaction ends; created at tier 0
    if the user has none.

    The creation is an upsert that changes nothing of an existing row: a request racing
    another's creation waits for an exclusive lock on the row and then has it. (An insert
    failing on the duplicate would hold a shared lock instead, and two of those, each
    then asking for the exclusive one, deadlock.)"""
    profile = _profile_locked(user.pk)
    if profile is None:
        target = {"unique_fields": ["user"]} if connection.features.supports_update_conflicts_with_target else {}
        KycProfile.objects.bulk_create(
            [KycProfile(user=user, tier_id=0)], update_conflicts=True, update_fields=["user"], **target
        )
        profile = _profile_locked(user.pk)
        if profile is None:
            raise RuntimeError(f"the KYC profile of user {user.pk} could not be created")
    return profile


_PROFILE_COLUMNS = ("id", "user_id", "tier_id")


# ``SELECT ... FOR UPDATE`` of one user's profile, built once: every transfer and
# withdrawal runs it.
_profile_for_update = Statement(
    lambda user_id: KycProfile.objects.select_for_update().filter(user_id=user_id).values_list(*_PROFILE_COLUMNS),
    user_id=KycProfile._meta.get_field("user"),
)


def _profile_locked(user_id: int) -> KycProfile | None:
    rows = _profile_for_update.rows(user_id=user_id)
    return (
        KycProfile.from_db(connection.alias, list(_PROFILE_COLUMNS), rows[0]) if rows else None
    )  # updated_at deferred


def _enforce(
    *, user: User, currency: Currency, amount: Decimal, what: str, limit_of: str, used: Callable[[], Fraction]
) -> None:
    profile = _kyc_lock(user)
    tier = selectors.tier_get(level=profile.tier_id)
    if tier is None:  # tiers are seeded by migration and restored after a flush
        raise RuntimeError(f"KYC tier {profile.tier_id} is missing: run manage.py migrate")
    if currency.kind == Currency.Kind.FIAT and not tier.fiat_allowed:
        raise PermissionDenied(
            "kyc_fiat_not_allowed",
            f"Your tier {tier.level} ({tier.name}) does not allow {what} in fiat currencies such as "
            f"{currency.code}: verify your identity for a higher tier.",
            details={"tier": tier.level, "currency": currency.code},
        )
    limit = getattr(tier, limit_of)
    if limit is None:
        return
    ref = selectors.reference_currency()
    value = selectors.value_in_reference(currency=currency, amount=amount)
    so_far = used()
    if so_far + value > limit:
        limit_text, used_text = format(limit.normalize(), "f"), format(selectors.shown(so_far).normalize(), "f")
        raise PermissionDenied(
            "kyc_limit_exceeded",
            f"Your tier {tier.level} ({tier.name}) allows {limit_text} {ref} of {what} in 24 hours; "
            f"{used_text} {ref} are used. Verify your identity for a higher tier, or wait.",
            details={
                "tier": tier.level,
                "limit": limit_text,
                "used": used_text,
                "amount": format(selectors.shown(value).normalize(), "f"),
                "reference_currency": ref,
            },
        )


def kyc_check_withdrawal(*, user: User, currency: Currency, amount: Decimal) -> None:
    """Refuse a withdrawal of ``amount`` (amount + fee: what leaves the balance) that the
    user's tier does not allow. Call inside the withdrawal's transaction, before it is stored."""
    _enforce(
        user=user,
        currency=currency,
        amount=amount,
        what="withdrawals",
        limit_of="withdrawal_limit_24h",
        used=lambda: selectors.withdrawn_24h(user=user),
    )


def kyc_check_transfer(*, user: User, currency: Currency, transfer: Transfer) -> None:
    """Refuse ``transfer`` (sent by ``user``, in ``currency``) if the sender's tier does not
    allow it. Call inside the transfer's transaction, right after its row is stored and
    before the money moves: a replayed idempotency key returns the stored transfer before
    this, and the count of the window leaves this transfer out."""
    _enforce(
        user=user,
        currency=currency,
        amount=transfer.amount,
        what="transfers",
        limit_of="transfer_limit_24h",
        used=lambda: selectors.transferred_24h(user=user, exclude_transfer_id=transfer.pk),
    )


# --- Setting a tier -------------------------------------------------------------------


def _profile_set(*, profile: KycProfile, level: int) -> int:
    """Set a locked profile's tier; returns the level before."""
    before = profile.tier_id
    if before != level:
        profile.tier_id = level
        profile.save(update_fields=["tier", "updated_at"])
    return before


@transaction.atomic
def kyc_level_set(
    *, user: User, level: int, actor: User | None, reason: str, request: HttpRequest | None = None
) -> KycProfile:
    """Put ``user`` at tier ``level`` directly (up or down), without a submission: a staff
    decision, or seeding. ``actor`` is the staff member (None for a command). Audited."""
    reason = reason.strip()[:200]
    if not reason:
        raise ServiceError("reason_required", "Say why the tier is set.")
    if selectors.tier_get(level=level) is None:
        raise ServiceError("kyc_level_invalid", f"There is no tier {level}.", details={"level": level})
    profile = _kyc_lock(user)
    before = _profile_set(profile=profile, level=level)
    if before != level:
        audit_record(
            action=actions.KYC_LEVEL_SET,
            actor=actor,
            target=user,
            request=request,
            details={"level_before": before, "level_after": level, "reason": reason},
        )
    return profile


# --- Submissions ----------------------------------------------------------------------

_SIGNATURES = (  # the first bytes of each accepted type
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"%PDF-", "application/pdf"),
)


@dataclass(frozen=True)
class _Checked:
    kind: str
    upload: UploadedFile
    content_type: str
    size: int
    sha256: str


def _content_type(head: bytes) -> str | None:
    return next((content_type for magic, content_type in _SIGNATURES if head.startswith(magic)), None)


def _document_check(kind: str, upload: UploadedFile) -> _Checked:
    size = upload.size or 0
    limit = settings.KYC_DOCUMENT_MAX_BYTES
    if size == 0:
        raise ServiceError("kyc_document_empty", f"The {kind} file is empty.", details={"kind": kind})
    if size > limit:
        raise ServiceError(
            "kyc_document_too_large",
            f"The {kind} file is larger than {limit} bytes.",
            details={"kind": kind, "max_bytes": limit},
        )
    digest = hashlib.sha256()
    upload.seek(0)
    head = upload.read(8)
    upload.seek(0)
    content_type = _content_type(head)
    if content_type is None:
        raise ServiceError(
            "kyc_document_type",
            f"The {kind} file is not a JPEG, PNG or PDF file.",
            details={"kind": kind, "accepted": sorted(DOCUMENT_TYPES)},
        )
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return _Checked(kind, upload, content_type, size, digest.hexdigest())


def kyc_submission_create(
    *, user: User, level: int, documents: Mapping[str, UploadedFile], request: HttpRequest | None = None
) -> KycSubmission:
    """Ask for tier ``level`` with ``documents`` (document kind -> uploaded file).

    Every document is checked before anything is stored: a known kind, not empty, at most
    ``KYC_DOCUMENT_MAX_BYTES``, a JPEG, PNG or PDF by its content; the tier's required
    documents all present. The files go to the private storage; if anything fails after a
    file was written, the files written are removed again.

    Errors: ``kyc_level_invalid``, ``kyc_document_kind_invalid``, ``kyc_documents_missing``,
    ``kyc_document_empty``, ``kyc_document_too_large``, ``kyc_document_type``,
    ``kyc_submission_pending`` (409).
    """
    tier = selectors.tier_get(level=level) if 0 < level <= MAX_LEVEL else None
    if tier is None:
        raise ServiceError("kyc_level_invalid", f"There is no tier {level} to ask for.", details={"level": level})
    unknown = sorted(set(documents) - set(DocumentKind.values))
    if unknown:
        raise ServiceError(
            "kyc_document_kind_invalid",
            f"Unknown document kinds: {', '.join(unknown)}.",
            details={"unknown": unknown, "kinds": list(DocumentKind.values)},
        )
    missing = [kind for kind in tier.required_documents if kind not in documents]
    if missing:
        raise ServiceError(
            "kyc_documents_missing",
            f"Tier {tier.level} needs these documents too: {', '.join(missing)}.",
            details={"missing": missing, "required": list(tier.required_documents)},
        )
    checked = [_document_check(kind, upload) for kind, upload in sorted(documents.items())]
    stored: list[str] = []
    try:
        with transaction.atomic():
            current = _kyc_lock(user).tier_id
            if level <= current:
                raise ServiceError(
                    "kyc_level_invalid",
                    f"You are at tier {current} already; ask for a higher one.",
                    details={"level": level, "current": current},
                )
            if KycSubmission.objects.filter(user=user, status=SubmissionStatus.PENDING).exists():
                raise Conflict("kyc_submission_pending", "A submission of yours is waiting for review already.")
            try:
                with transaction.atomic():
                    submission = KycSubmission.objects.create(user=user, tier=tier, pending_user=user)
            except IntegrityError:
                raise Conflict(
                    "kyc_submission_pending", "A submission of yours is waiting for review already."
                ) from None
            for item in checked:
                document = KycDocument(
                    submission=submission,
                    kind=item.kind,
                    content_type=item.content_type,
                    size=item.size,
                    sha256=item.sha256,
                )
                document.file.save("upload", item.upload, save=False)
                stored.append(document.file.name)
                document.save()
            audit_record(
                action=actions.KYC_SUBMITTED,
                actor=user,
                target=submission,
                request=request,
                details={"level": level, "documents": [item.kind for item in checked]},
            )
    except BaseException:
        storage = KycDocument._meta.get_field("file").storage
        for name in stored:
            storage.delete(name)
        raise
    return submission


# --- Review ---------------------------------------------------------------------------


def _reviewable(submission_id: int, staff: User) -> tuple[KycSubmission, KycProfile]:
    """The pending submission and its user's profile, both locked (the profile first, as
    every KYC write locks)."""
    found = KycSubmission.objects.select_related("user").filter(pk=submission_id).first()
    if found is None:
        raise NotFound("kyc_submission_not_found", f"There is no KYC submission {submission_id}.")
    profile = _kyc_lock(found.user)
    submission = KycSubmission.objects.select_for_update().select_related("user", "tier").get(pk=submission_id)
    if submission.user_id == staff.pk:
        raise PermissionDenied("kyc_own_submission", "Nobody reviews their own submission.")
    if submission.status != SubmissionStatus.PENDING:
        raise Conflict("kyc_submission_decided", f"The submission is {submission.status} already.")
    return submission, profile


@transaction.atomic
def kyc_submission_approve(*, submission_id: int, staff: User, request: HttpRequest | None = None) -> KycSubmission:
    """Approve a pending submission: the user gets its tier (never a lower one than they have)."""
    submission, profile = _reviewable(submission_id, staff)
    after = max(profile.tier_id, submission.tier_id)
    before = _profile_set(profile=profile, level=after)
    submission.status = SubmissionStatus.APPROVED
    submission.pending_user = None
    submission.decided_by, submission.decided_at = staff, timezone.now()
    submission.save(update_fields=["status", "pending_user", "decided_by", "decided_at"])
    audit_record(
        action=actions.KYC_SUBMISSION_APPROVED,
        actor=staff,
        target=submission,
        request=request,
        details={"user": submission.user.email, "level_before": before, "level_after": after},
    )
    return submission


@transaction.atomic
def kyc_submission_reject(
    *, submission_id: int, staff: User, reason: str, request: HttpRequest | None = None
) -> KycSubmission:
    """Reject a pending submission with a reason the user sees; their tier stays."""
    reason = reason.strip()
    if not reason:
        raise ServiceError("reason_required", "Say why the submission is rejected; the user sees it.")
    if len(reason) > 500:
        raise ServiceError("reason_too_long", "The reason has at most 500 characters.")
    submission, _ = _reviewable(submission_id, staff)
    submission.status = SubmissionStatus.REJECTED
    submission.reason = reason
    submission.pending_user = None
    submission.decided_by, submission.decided_at = staff, timezone.now()
    submission.save(update_fields=["status", "reason", "pending_user", "decided_by", "decided_at"])
    audit_record(
        action=actions.KYC_SUBMISSION_REJECTED,
        actor=staff,
        target=submission,
        request=request,
        details={"user": submission.user.email, "level": submission.tier_id, "reason": reason},
    )
    return submission


@transaction.atomic
def kyc_document_open(
    *, submission_id: int, document_id: int, staff: User, request: HttpRequest | None = None
) -> tuple[KycDocument, IO[bytes]]:
    """Open a document for a reviewer (the caller checks the permission); every opening is audited."""
    document = (
        KycDocument.objects.select_related("submission__user")
        .filter(pk=document_id, submission_id=submission_id)
        .first()
    )
    if document is None:
        raise NotFound("kyc_document_not_found", "There is no such document.")
    handle = document.file.storage.open(document.file.name, "rb")
    audit_record(
        action=actions.KYC_DOCUMENT_VIEWED,
        actor=staff,
        target=document.submission,
        request=request,
        details={"user": document.submission.user.email, "document": document.pk, "kind": document.kind},
    )
    return document, handle
