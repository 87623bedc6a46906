"""Print the current 2FA code of an account's authenticator device (development and tests only).

For the demo: the back office asks every staff login for a code, and a newcomer has no
authenticator app set up. Refused in production.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import normalize_email


class Command(BaseCommand):
    help = "Print the current TOTP code of <email> (development only), e.g. for the demo admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")

    def handle(self, *args, **options) -> None:
        if settings.PRODUCTION:
            raise CommandError("totp_code is for development only; it is disabled in production.")
        email = normalize_email(options["email"])
        device = TOTPDevice.objects.filter(user__email=email, confirmed=True).order_by("id").first()
        if device is None:
            raise CommandError(f"{email} has no confirmed authenticator device.")
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = time.time()
        remaining = device.step - int(totp.time - device.t0) % device.step
        self.stdout.write(f"{totp.token():0{device.digits}d}")
        self.stderr.write(f"(valid for about {remaining} more seconds; each code works once)")
