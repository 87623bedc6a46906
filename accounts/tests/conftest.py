"""Fixtures for accounts' tests: 2FA, the back office (which needs a second factor) and API keys."""

from __future__ import annotations

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.tests.helpers import enable_otp


@pytest.fixture
def otp_user(user):
    """The ``user`` fixture with 2FA on."""
    enable_otp(user)
    return user


@pytest.fixture
def other_user(db, password):
    from accounts.services import user_register

    return user_register(email="other@example.com", password=password, name="Other")


@pytest.fixture
def other_client(other_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(other_user)
    return client


@pytest.fixture
def make_api_key(otp_user):
    """Create an API key for ``user`` through the service; returns ``(api_key, secret)``."""
    from accounts.api_keys import api_key_create
    from accounts.tests.helpers import otp_code

    def make(*, scopes=("read",), ip_allowlist=(), label="bot", user=None):
        owner = user or otp_user
        if not TOTPDevice.objects.filter(user=owner, confirmed=True).exists():
            enable_otp(owner)
        created = api_key_create(
            user=owner, label=label, scopes=scopes, ip_allowlist=ip_allowlist, otp_code=otp_code(owner)
        )
        return created.api_key, created.secret

    return make
