"""Demo accounts: an admin and two traders. Idempotent.

The back office needs a second factor for every staff login, so the demo admin gets a
TOTP device with a fixed, public demo secret: add the printed otpauth:// URI to any
authenticator app, or print the current code with ``python manage.py totp_code <email>``
(development only).
"""

from __future__ import annotations

import base64
import os
import sys

from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from accounts.roles import ADMIN, TRADER

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@kootabase.local", "kootabase-admin"
# Public on purpose, like the demo passwords: never give a real account this secret.
ADMIN_TOTP_KEY = b"kootabase-demo-admin".hex()
TRADERS = (
    ("alice@kootabase.local", "Alice Demo", "kootabase-alice"),
    ("bob@kootabase.local", "Bob Demo", "kootabase-bob"),
)


def _python() -> str:
    """The interpreter to name in instructions: the project's venv, relative when inside it."""
    relative = os.path.relpath(sys.executable)
    return relative if not relative.startswith("..") else sys.executable


def seed() -> list[str]:
    """Create the demo accounts if missing; return lines describing them."""
    admin, created = User.objects.get_or_create(
        email=ADMIN_EMAIL, defaults={"name": "Demo Admin", "is_staff": True, "is_superuser": True}
    )
    if created:
        admin.set_password(ADMIN_PASSWORD)
        admin.save(update_fields=["password"])
    admin.groups.add(Group.objects.get(name=ADMIN))
    device, _ = TOTPDevice.objects.get_or_create(
        user=admin, name="demo authenticator", defaults={"key": ADMIN_TOTP_KEY, "confirmed": True}
    )
    for email, name, password in TRADERS:
        user, created = User.objects.get_or_create(email=email, defaults={"name": name})
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get(name=TRADER))
    secret = base64.b32encode(device.bin_key).decode()
    lines = [
        f"admin   {ADMIN_EMAIL} / {ADMIN_PASSWORD}  (back office: /admin/, needs a 2FA code)",
        f"        2FA code: {_python()} manage.py totp_code {ADMIN_EMAIL}",
        f"        (or add the secret {secret} to an authenticator app: {device.config_url})",
    ]
    lines += [f"trader  {email} / {password}" for email, _, password in TRADERS]
    return lines
