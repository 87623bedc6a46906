"""Account writes: registration, profile, passwords, logins, login history and token revocation.

Two-factor authentication lives in ``accounts/otp.py``, API keys in ``accounts/api_keys.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from django.conf import settings
from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, models, transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.throttling import BaseThrottle
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User, normalize_email
from accounts.roles import TRADER
from audit import actions
from audit.services import audit_record
from kootabase.errors import Conflict, PermissionDenied, RateLimited, ServiceError


def _password_error(exc: DjangoValidationError) -> ServiceError:
    messages = list(exc.messages)
    return ServiceError(
        "weak_password",
        " ".join(messages),
        details={
            "password": [
                {"code": e.code or "weak_password", "message": m}
                for e, m in zip(exc.error_list, messages, strict=False)
            ]
        },
    )


@transaction.atomic
def user_register(*, email: str, password: str, name: str = "", phone_number: str = "") -> User:
    """Create a trader account. Raises ``email_taken`` or ``weak_password``; creates nothing then."""
    email = normalize_email(email)
    if User.objects.filter(email=email).exists():
        raise Conflict("email_taken", "An account with this email already exists.")
    candidate = User(email=email, name=name, phone_number=phone_number)
    try:
        password_validation.validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise _password_error(exc) from exc
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, name=name, phone_number=phone_number)
    except IntegrityError as exc:  # a concurrent registration with the same email won
        raise Conflict("email_taken", "An account with this email already exists.") from exc
    user.groups.add(Group.objects.get(name=TRADER))
    return user


def user_update(*, user: User, name: str | None = None, phone_number: str | None = None) -> User:
    fields = []
    if name is not None:
        user.name = name
        fields.append("name")
    if phone_number is not None:
        user.phone_number = phone_number
        fields.append("phone_number")
    if fields:
        user.save(update_fields=[*fields, "updated_at"])
    return user


@transaction.atomic
def user_change_password(
    *, user: User, old_password: str, new_password: str, request: HttpRequest | None = None
) -> User:
    """Change the password and revoke every refresh token the user holds."""
    if not user.check_password(old_password):
        raise ServiceError("wrong_password", "The current password is not correct.")
    try:
        password_validation.validate_password(new_password, user=user)
    except DjangoValidationError as exc:
        raise _password_error(exc) from exc
    user.set_password(new_password)
    user.save(update_fields=["password", "updated_at"])
    tokens_revoke_all(user=user)
    audit_record(action=actions.PASSWORD_CHANGED, actor=user, target=user, request=request)
    return user


@transaction.atomic
def user_logout_everywhere(*, user: User, actor: User | None = None, request: HttpRequest | None = None) -> None:
    """End every session and token of ``user``: sessions, refresh tokens and access tokens.

    Bumping ``auth_epoch`` invalidates every session (it is part of the session hash) and
    every access token (which carries the epoch it was issued in); refresh tokens are
    blacklisted as well. ``actor``: the staff member who did it for the user (default: the user).
    """
    User.objects.filter(pk=user.pk).update(auth_epoch=models.F("auth_epoch") + 1)
    user.refresh_from_db(fields=["auth_epoch"])
    tokens_revoke_all(user=user)
    audit_record(action=actions.LOGOUT_EVERYWHERE, actor=actor or user, target=user, request=request)


# --- Freezing ---------------------------------------------------------------------------

FREEZE_USER = "accounts.freeze_user"
CANCEL_REASON_FROZEN = "account_frozen"


def _check_may_freeze(actor: User | None) -> None:
    if actor is not None and not (actor.is_active and actor.is_staff and actor.has_perm(FREEZE_USER)):
        raise PermissionDenied("freeze_forbidden", "You may not freeze or unfreeze accounts.")


def user_check_not_frozen(*, user: User) -> None:
    """Refuse a money-moving action of a frozen account: ``account_frozen`` (403)."""
    if user.frozen_at is not None:
        raise PermissionDenied(
            "account_frozen",
            "This account is frozen: orders, swaps, transfers and withdrawals are refused. Contact support.",
        )


def users_lock_frozen(*, user_ids: Collection[int]) -> set[int]:
    """In the caller's transaction: lock the users' rows until it ends, and return the ids
    of those frozen. ``user_freeze`` locks the row too, so a freeze either committed
    before and is seen here, or waits for the caller's transaction (and then its cancel
    of the user's orders sees what that transaction wrote). Every row is locked, frozen or
    not, in id order (two callers never wait on each other in a circle). Order placement
    runs this for every group: plain SQL, without the ORM's building (about 0.25 ms)."""
    ids = sorted(user_ids)
    if not ids:
        return set()
    quote = connection.ops.quote_name
    pk, frozen = quote(User._meta.pk.column), quote(User._meta.get_field("frozen_at").column)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite: the write lock is held
    sql = (
        f"SELECT {pk}, {frozen} IS NOT NULL FROM {quote(User._meta.db_table)} "  # noqa: S608 - names from the model
        f"WHERE {pk} IN ({', '.join(['%s'] * len(ids))}) ORDER BY {pk}{lock}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, ids)
        return {user_id for user_id, is_frozen in cursor.fetchall() if is_frozen}


@transaction.atomic
def user_freeze(
    *, user: User, actor: User | None, reason: str, cancel_orders: bool = False, request: HttpRequest | None = None
) -> User:
    """Freeze ``user``: from now on they move nothing (see ``user_check_not_frozen``).

    ``actor`` is the staff member (who needs ``accounts.freeze_user``: ``freeze_forbidden``
    otherwise), or None for an automatic rule. Open orders stay as they are unless
    ``cancel_orders``: then, with the freeze, the matcher is asked to cancel every live
    order of the user (``orders.services.orders_cancel_all``, reason ``account_frozen``).
    Freezing a frozen account changes nothing and records nothing.
    """
    from orders.services import orders_cancel_all  # orders builds on accounts, not the other way

    _check_may_freeze(actor)
    reason = reason.strip()[:200]
    if not reason:
        raise ServiceError("reason_required", "Say why the account is frozen.")
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.frozen_at is None:
        locked.frozen_at = timezone.now()
        locked.frozen_reason = reason
        locked.save(update_fields=["frozen_at", "frozen_reason", "updated_at"])
        details: dict[str, object] = {"reason": reason}
        if cancel_orders:
            details["orders_cancelled"] = len(orders_cancel_all(user=locked, cancel_reason=CANCEL_REASON_FROZEN))
        audit_record(action=actions.USER_FROZEN, actor=actor, target=locked, request=request, details=details)
    user.frozen_at, user.frozen_reason = locked.frozen_at, locked.frozen_reason
    return user


@transaction.atomic
def user_unfreeze(*, user: User, actor: User | None, reason: str = "", request: HttpRequest | None = None) -> User:
    """Lift a freeze (``actor`` needs ``accounts.freeze_user``, as for freezing). Unfreezing
    an account that is not frozen changes nothing."""
    _check_may_freeze(actor)
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.frozen_at is not None:
        previous = locked.frozen_reason
        locked.frozen_at, locked.frozen_reason = None, ""
        locked.save(update_fields=["frozen_at", "frozen_reason", "updated_at"])
        audit_record(
            action=actions.USER_UNFROZEN,
            actor=actor,
            target=locked,
            request=request,
            details={"reason": reason.strip()[:200], "frozen_for": previous},
        )
    user.frozen_at, user.frozen_reason = None, ""
    return user


def tokens_revoke_all(*, user: User) -> int:
    """Blacklist every outstanding refresh token of ``user``; returns how many."""
    outstanding = OutstandingToken.objects.filter(user=user).exclude(blacklistedtoken__isnull=False)
    revoked = [BlacklistedToken(token=token) for token in outstanding]
    BlacklistedToken.objects.bulk_create(revoked, ignore_conflicts=True)
    return len(revoked)


def tokens_issue(*, user: User) -> dict[str, str]:
    refresh = RefreshToken.for_user(user)
    refresh[AUTH_EPOCH_CLAIM] = user.auth_epoch  # copied into every access token it issues
    return {"refresh": str(refresh), "access": str(refresh.access_token)}


# --- Logins ---------------------------------------------------------------------------


AUTH_EPOCH_CLAIM = "epoch"


def client_ip(request: HttpRequest) -> str:
    """The caller's IP: REMOTE_ADDR, or X-Forwarded-For behind ``NUM_PROXIES`` trusted proxies.

    The same rule DRF's throttles use, so lockouts, rate limits, API key allow-lists and
    the audit trail all see the same address.
    """
    return BaseThrottle().get_ident(request) or "unknown"


def _email_failure_key(email: str) -> str:
    digest = hashlib.sha256(normalize_email(email).encode()).hexdigest()[:32]
    return f"login-failures:email:{digest}"


def _failure_keys(email: str, ip: str) -> list[str]:
    return [_email_failure_key(email), f"login-failures:ip:{ip}"]


def _check_not_locked(email: str, ip: str) -> None:
    counts = cache.get_many(_failure_keys(email, ip))
    if any(count >= settings.LOGIN_FAILURE_LIMIT for count in counts.values()):
        raise RateLimited(
            "too_many_login_attempts",
            "Too many failed logins. Try again later.",
            retry_after=settings.LOGIN_FAILURE_WINDOW,
        )


def _record_failure(email: str, ip: str) -> None:
    for key in _failure_keys(email, ip):
        if cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW)


def user_authenticate(*, request: HttpRequest, email: str, password: str) -> User:
    """Check credentials, counting failures per email and per IP.

    After ``LOGIN_FAILURE_LIMIT`` failures within ``LOGIN_FAILURE_WINDOW`` seconds every
    attempt for that email or from that IP is refused with 429 until the window passes,
    even with the right password.
    """
    ip = client_ip(request)
    _check_not_locked(email, ip)
    user = authenticate(request, username=normalize_email(email), password=password)
    if user is None:
        _record_failure(email, ip)
        account = User.objects.filter(email=normalize_email(email)).first()
        audit_record(
            action=actions.LOGIN_FAILED,
            target=account,
            target_type="" if account else User._meta.label_lower,
            request=request,
            details={"email": normalize_email(email)[:254], "path": request.path},
        )
        raise ServiceError("invalid_credentials", "The email or password is not correct.", status=401)
    cache.delete(_email_failure_key(email))
    audit_record(action=actions.LOGIN, actor=user, target=user, request=request, details={"path": request.path})
    return user
