"""Two-factor authentication: TOTP authenticator apps and single-use recovery codes (django-otp).

A user enrols (an unconfirmed TOTP device and its ``otpauth://`` URI for the QR code),
confirms with a first code (the device is confirmed and recovery codes are issued), and
may then renew the recovery codes or turn 2FA off — each with a current code.

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
from kootabase.errors import Conflict, PermissionDenied, RateLimited

TOTP_DEVICE_NAME = "authenticator"
RECOVERY_DEVICE_NAME = "recovery codes"
_TOTP_FORMAT = re.compile(r"^\d{6}$")


def otp_enabled(*, user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


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


def otp_status(*, user: User) -> dict[str, Any]:
    return {
        "enabled": otp_enabled(user=user),
        "recovery_codes_left": StaticToken.objects.filter(device__user=user, device__confirmed=True).count(),
    }
