"""Test helpers for staff members, 2FA, the back office, signed API-key requests and access-control sweeps.

Importable by every app's tests (``from accounts.tests.helpers import ...``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.api_keys import sign
from accounts.models import User


def staff_member(email: str, role: str | None = None) -> User:
    """A staff member (``is_staff``) holding ``role`` (a group of ``accounts.roles``), or none;
    fetched again so that no permission cache of the creation is carried along."""
    user = User.objects.create_user(email=email, password="pw-staff-12345", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)


def enable_otp(user: Any) -> TOTPDevice:
    """Give ``user`` a confirmed authenticator device (2FA on)."""
    return TOTPDevice.objects.create(user=user, name="test authenticator", confirmed=True)


def otp_code(user_or_device: Any) -> str:
    """A current, unused TOTP code (the device's replay guard is reset so tests may ask again)."""
    device = (
        user_or_device
        if isinstance(user_or_device, TOTPDevice)
        else TOTPDevice.objects.filter(user=user_or_device).order_by("id").last()
    )
    TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"


def admin_login(client: Client, user: Any) -> Client:
    """Log ``client`` in to the back office as ``user``, verified by a second factor."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or enable_otp(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def signed(
    client: APIClient,
    method: str,
    path: str,
    *,
    key: str,
    secret: str,
    body: Any = None,
    query: str = "",
    expires: int | None = None,
    sign_as: dict[str, Any] | None = None,
    **extra: Any,
) -> Any:
    """Send a request signed as docs/api.md describes. ``sign_as`` overrides what is signed (tampering)."""
    raw = b"" if body is None else json.dumps(body).encode()
    expires = expires if expires is not None else int(time.time() * 1000) + 10_000
    parts = {"method": method, "path": path, "query": query, "expires": expires, "body": raw, **(sign_as or {})}
    signature = sign(secret=secret, **parts)
    url = f"{path}?{query}" if query else path
    return client.generic(
        method,
        url,
        raw,
        content_type="application/json",
        HTTP_X_KB_APIKEY=key,
        HTTP_X_KB_EXPIRES=str(expires),
        HTTP_X_KB_SIGNATURE=signature,
        **extra,
    )


def assert_hidden_from_other_users(
    client: APIClient, requests: Iterable[tuple[str, str, Any]], snapshot: Callable[[], Any]
) -> None:
    """Access-control sweep: each ``(method, path, body)`` about someone else's object answers
    404 ``not_found`` — exactly as for an id that does not exist — and ``snapshot()`` (the
    state the request could change) is the same afterwards."""
    before = snapshot()
    for method, path, body in requests:
        response = client.generic(
            method, path, json.dumps(body) if body is not None else "", content_type="application/json"
        )
        assert response.status_code == 404, (method, path, response.status_code, response.content[:300])
        assert response.json()["code"] == "not_found", (method, path)
    assert snapshot() == before
