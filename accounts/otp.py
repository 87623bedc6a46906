"""Two-factor authentication: TOTP authenticator apps and single-use recovery codes (django-otp).

A user enrols (an unconfirmed TOTP device and its ``otpauth://`` URI for the QR code),
confirms with a first code (the device is confirmed and recovery codes are issued), and
may then renew the recovery codes or turn 2FA off — each with a current code. A user who
lost their device gets it reset by staff (``otp_reset``).

``otp_verify`` is the one check every protected action calls (creating API keys,
changing 2FA, withdrawals). It runs *before* the action opens its transaction: a failed
attempt is counted on the device (django-otp's exponential back-off) and that count must
not roll back with the refused action.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from audit import actions
from audit.services import audit_record
from kootabase.errors import Conflict, PermissionDenied, RateLimited, ServiceError

RESET_OTP = "accounts.reset_otp"
TOTP_DEVICE_NAME = "authenticator"
RECOVERY_DEVICE_NAME = "recovery codes"
_TOTP_FORMAT = re.compile(r"^\d{6}$")


def otp_enabled(*, user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def otp_has_devices(*, user: User) -> bool:
    """Whether ``otp_reset`` has anything to remove (a device, confirmed or not, or recovery codes)."""
    return TOTPDevice.objects.filter(user=user).exists() or StaticDevice.objects.filter(user=user).exists()


def normalize_code(code: str | None) -> str:
    return (code or "").strip().replace(" ", "").lower()


def otp_device_for_code(*, user: User, code: str) -> Device | None:
    """The one device a code is checked against: six digits are a TOTP code, anything else a
    recovery code. (Trying every device would count a failure against each.)"""
    devices = TOTPDevice if _TOTP_FORMAT.match(normalize_code(code)) else StaticDevice
    return devices.objects.filter(user=user, confirmed=True).order_by("id").first()


def _new_recovery_codes(*, user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(settings.OTP_RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def _verify_device(device: Device, code: str) -> bool:
    allowed, info = device.verify_is_allowed()
    if not allowed:
        locked_until = (info or {}).get("locked_until")
        wait = int((locked_until - timezone.now()).total_seconds()) + 1 if locked_until else 1
        raise RateLimited("otp_throttled", "Too many wrong codes. Wait before trying again.", retry_after=max(wait, 1))
    return device.verify_token(code)


def otp_verify(*, user: User, code: str | None, request: HttpRequest | None = None, purpose: str = "") -> Device:
    """Check a current TOTP code or an unused recovery code of ``user``; return the device that took it.

    Raises ``otp_required`` (403) when 2FA is off or no code was sent, ``otp_invalid``
    (403) for a wrong code, ``otp_throttled`` (429) while the device backs off.
    """
    if not otp_enabled(user=user):
        raise PermissionDenied("otp_required", "Turn on two-factor authentication first (POST /api/v1/me/2fa/totp).")
    code = normalize_code(code)
    if not code:
        raise PermissionDenied("otp_required", "This action needs a code from your authenticator app (otp_code).")
    device = otp_device_for_code(user=user, code=code)
    if device is not None and _verify_device(device, code):
        return device
    audit_record(action=actions.OTP_FAILED, actor=user, target=user, request=request, details={"purpose": purpose})
    raise PermissionDenied("otp_invalid", "The two-factor code is not correct.")


def otp_enrol(*, user: User) -> TOTPDevice:
    """Start enrolment: a new unconfirmed TOTP device (any earlier unconfirmed one is dropped)."""
    if otp_enabled(user=user):
        raise Conflict("otp_already_enabled", "Two-factor authentication is already on; turn it off first.")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


def otp_confirm(*, user: User, code: str, request: HttpRequest | None = None) -> list[str]:
    """Confirm enrolment with a first code; returns the recovery codes (shown once)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        if otp_enabled(user=user):
            raise Conflict("otp_already_enabled", "Two-factor authentication is already on.")
        raise Conflict("otp_not_enrolled", "Start with POST /api/v1/me/2fa/totp.")
    if not _verify_device(device, (code or "").strip()):
        raise PermissionDenied("otp_invalid", "The two-factor code is not correct.")
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _new_recovery_codes(user=user)
        audit_record(action=actions.OTP_ENABLED, actor=user, target=user, request=request)
    return codes


def otp_recovery_codes_renew(*, user: User, code: str | None, request: HttpRequest | None = None) -> list[str]:
    """Replace the recovery codes (the old ones stop working); needs a current code."""
    otp_verify(user=user, code=code, request=request, purpose="recovery_codes")
    with transaction.atomic():
        codes = _new_recovery_codes(user=user)
        audit_record(action=actions.OTP_RECOVERY_CODES_RENEWED, actor=user, target=user, request=request)
    return codes


def otp_disable(*, user: User, code: str | None, request: HttpRequest | None = None) -> None:
    """Turn 2FA off (every device and recovery code goes); needs a current code."""
    otp_verify(user=user, code=code, request=request, purpose="disable")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        audit_record(action=actions.OTP_DISABLED, actor=user, target=user, request=request)


def otp_reset(*, user: User, actor: User, reason: str, request: HttpRequest | None = None) -> None:
    """Staff turn 2FA off for a user who lost their device: every TOTP device and recovery
    code goes, and every session and token of the user ends (``user_logout_everywhere``),
    so whoever holds them must log in again and enrol anew.

    Raises ``otp_reset_forbidden`` (403: ``actor`` lacks ``accounts.reset_otp``, or resets
    their own 2FA, which only a colleague may do), ``reason_required`` or
    ``otp_not_enabled`` (409: nothing to reset) before anything is written.
    """
    from accounts.services import user_logout_everywhere

    if not (actor.is_active and actor.is_staff and actor.has_perm(RESET_OTP)):
        raise PermissionDenied("otp_reset_forbidden", "You may not reset two-factor authentication.")
    if actor.pk == user.pk:
        raise PermissionDenied("otp_reset_forbidden", "Another staff member must reset your two-factor authentication.")
    reason = (reason or "").strip()[:200]
    if not reason:
        raise ServiceError("reason_required", "Say why: the reason goes to the audit trail.")
    with transaction.atomic():
        totp, _ = TOTPDevice.objects.filter(user=user).delete()
        static, _ = StaticDevice.objects.filter(user=user).delete()
        if not totp and not static:
            raise Conflict("otp_not_enabled", "This user has no two-factor device to reset.")
        user_logout_everywhere(user=user, actor=actor, request=request)
        audit_record(action=actions.OTP_RESET, actor=actor, target=user, request=request, details={"reason": reason})


def otp_status(*, user: User) -> dict[str, Any]:
    return {
        "enabled": otp_enabled(user=user),
        "recovery_codes_left": StaticToken.objects.filter(device__user=user, device__confirmed=True).count(),
    }
