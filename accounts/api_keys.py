"""API keys for bots: creation (2FA), revocation, and the check of each signed request.

Signing scheme (documented with a worked example in docs/api.md)::

    payload   = METHOD + "\\n" + PATH + "\\n" + QUERY + "\\n" + EXPIRES + "\\n" + BODY
    signature = hex(HMAC-SHA256(secret, payload))

sent as ``X-KB-APIKEY`` (the key id), ``X-KB-EXPIRES`` (Unix time in milliseconds, at
most ``API_KEY_MAX_EXPIRY_SECONDS`` ahead) and ``X-KB-SIGNATURE``. A signature is
accepted once: it is remembered in the cache until it expires.

Secrets are encrypted at rest with Fernet under ``API_KEY_ENCRYPTION_KEYS`` (the first
encrypts; all decrypt, for rotation) and shown once, in the creation response.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache as memoize

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import ApiKey, ApiKeyScope, User
from accounts.otp import otp_verify
from audit import actions
from audit.services import audit_record
from kootabase.errors import NotFound, PermissionDenied, ServiceError

MAX_ACTIVE_KEYS = 20
SIGNATURE_HEADERS = ("X-KB-APIKEY", "X-KB-EXPIRES", "X-KB-SIGNATURE")


class SignatureError(ServiceError):
    """A signed request that is refused: 401 with a specific code."""

    status = 401


@memoize
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def encrypt_secret(secret: str) -> str:
    return _fernet(tuple(settings.API_KEY_ENCRYPTION_KEYS)).encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    return _fernet(tuple(settings.API_KEY_ENCRYPTION_KEYS)).decrypt(token.encode()).decode()


def sign(*, secret: str, method: str, path: str, query: str, expires: int | str, body: bytes | str) -> str:
    """The signature of one request (what a client computes; see docs/api.md)."""
    body_bytes = body.encode() if isinstance(body, str) else body
    payload = f"{method.upper()}\n{path}\n{query}\n{expires}\n".encode() + body_bytes
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def _clean_scopes(scopes: Iterable[str]) -> list[str]:
    valid = set(ApiKeyScope.values)
    chosen = sorted(set(scopes))
    unknown = [s for s in chosen if s not in valid]
    if unknown or not chosen:
        raise ServiceError(
            "scopes_invalid",
            f"Scopes must be a non-empty list of {', '.join(sorted(valid))}.",
            details={"scopes": unknown},
        )
    return chosen


def _clean_allowlist(entries: Iterable[str]) -> list[str]:
    networks = []
    for entry in entries:
        try:
            networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError as exc:
            raise ServiceError(
                "ip_allowlist_invalid", f"{entry!r} is not an IP address or network.", details={"entry": entry}
            ) from exc
    return sorted(set(networks))


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    secret: str


def api_key_create(
    *,
    user: User,
    label: str,
    scopes: Iterable[str],
    ip_allowlist: Iterable[str] = (),
    otp_code: str | None,
    request: HttpRequest | None = None,
) -> CreatedApiKey:
    """Create a key after a 2FA check; the secret is returned here and never again."""
    scopes = _clean_scopes(scopes)
    allowlist = _clean_allowlist(ip_allowlist)
    otp_verify(user=user, code=otp_code, request=request, purpose="api_key_create")
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # serialise the count below per user
        if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_KEYS:
            raise ServiceError("api_key_limit", f"At most {MAX_ACTIVE_KEYS} active API keys; revoke one first.")
        secret = secrets.token_urlsafe(32)
        api_key = ApiKey.objects.create(
            user=user,
            label=label,
            key=secrets.token_urlsafe(24),
            secret_encrypted=encrypt_secret(secret),
            scopes=scopes,
            ip_allowlist=allowlist,
        )
        audit_record(
            action=actions.API_KEY_CREATED,
            actor=user,
            target=api_key,
            request=request,
            details={"scopes": scopes, "ip_allowlist": allowlist},
        )
    return CreatedApiKey(api_key=api_key, secret=secret)


def api_key_revoke(*, user: User, api_key_id: int, request: HttpRequest | None = None) -> ApiKey:
    """Revoke one of ``user``'s keys; another user's key id is ``not_found`` and left alone."""
    with transaction.atomic():
        api_key = ApiKey.objects.select_for_update().filter(pk=api_key_id, user=user, revoked_at__isnull=True).first()
        if api_key is None:
            raise NotFound("not_found", "No such API key.")
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(action=actions.API_KEY_REVOKED, actor=user, target=api_key, request=request)
    return api_key


def _ip_allowed(api_key: ApiKey, ip: str) -> bool:
    if not api_key.ip_allowlist:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in api_key.ip_allowlist)


def api_key_authenticate(
    *, key: str, expires: str, signature: str, method: str, path: str, query: str, body: bytes, ip: str
) -> ApiKey:
    """Check one signed request; return its key. Nothing is remembered unless it passes.

    Codes: ``api_key_invalid`` (unknown or revoked key, inactive user), ``signature_expired``
    (the expiry passed, or is too far ahead), ``signature_invalid`` (a tampered request or a
    wrong secret), ``signature_replayed`` (seen before), and ``ip_not_allowed`` (403).
    """
    api_key = ApiKey.objects.select_related("user").filter(key=key, revoked_at__isnull=True).first()
    if api_key is None or not api_key.user.is_active:
        raise SignatureError("api_key_invalid", "Unknown or revoked API key.")
    now_ms = int(time.time() * 1000)
    try:
        if not expires.isascii():  # int() reads the digits of every script
            raise ValueError(expires)
        expires_ms = int(expires)
    except ValueError as exc:
        raise SignatureError("signature_expired", "X-KB-EXPIRES must be Unix time in milliseconds.") from exc
    if expires_ms <= now_ms:
        raise SignatureError("signature_expired", "The request has expired.")
    if expires_ms > now_ms + settings.API_KEY_MAX_EXPIRY_SECONDS * 1000:
        raise SignatureError(
            "signature_expired",
            f"X-KB-EXPIRES may be at most {settings.API_KEY_MAX_EXPIRY_SECONDS} seconds ahead.",
        )
    try:
        secret = decrypt_secret(api_key.secret_encrypted)
    except InvalidToken as exc:  # the encryption key was changed without keeping the old one
        raise SignatureError("api_key_invalid", "This API key can no longer be used; create a new one.") from exc
    expected = sign(secret=secret, method=method, path=path, query=query, expires=expires, body=body)
    # As bytes: a header is read as Latin-1, and compare_digest refuses text beyond ASCII.
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise SignatureError("signature_invalid", "The signature does not match the request.")
    if not _ip_allowed(api_key, ip):
        raise PermissionDenied("ip_not_allowed", "This API key may not be used from this IP address.")
    ttl = (expires_ms - now_ms) // 1000 + 2
    if not cache.add(f"api-key-signature:{api_key.pk}:{expected}", 1, timeout=ttl):
        raise SignatureError("signature_replayed", "This signed request was already used.")
    if api_key.last_used_at is None or (timezone.now() - api_key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
    return api_key
