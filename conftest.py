"""Test fixtures shared by every app.

Markers ``mariadb`` and ``redis`` mark tests that need a real server; they are skipped,
with the reason, when the suite runs on the embedded setup, and run in CI's second pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        "mariadb": None
        if settings.DATABASE_VENDOR == "mysql"
        else "needs MariaDB/MySQL: set DATABASE_URL=mysql://root@127.0.0.1:3306/kootabase (CI's second pass)",
        "redis": None
        if settings.REDIS_URL
        else "needs Redis: set REDIS_URL=redis://127.0.0.1:6379/0 (CI's second pass)",
    }
    for item in items:
        for marker, reason in skips.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Throttle counters, login-failure counters and the process's catalogs must not leak
    between tests (each test's database starts over)."""
    from kootabase import catalog

    cache.clear()
    catalog.forget_all()
    yield
    cache.clear()
    catalog.forget_all()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def password() -> str:
    return "correct-horse-battery-staple"


@pytest.fixture
def user(db, password):
    from accounts.services import user_register

    return user_register(email="trader@example.com", password=password, name="Trader")


@pytest.fixture
def admin_client(db, admin_user):
    """pytest-django's ``admin_client``, verified by a second factor as the back office requires."""
    from django.test import Client

    from accounts.tests.helpers import admin_login

    return admin_login(Client(), admin_user)


@pytest.fixture
def auth_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client
