"""Monitoring fixtures: an empty shared store, the demo markets with two funded traders,
staff with and without the dashboard permission, and the blockchain fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import User
from accounts.tests.helpers import admin_login
from blockchain.tests.conftest import chain, eth_asset, network, usdt_asset  # noqa: F401 - fixtures
from monitoring.store import get_store
from orders import demo
from orders.models import Market
from wallets.models import Currency
from wallets.tests.factories import UserFactory, fund


@pytest.fixture(autouse=True)
def _empty_store() -> Iterator[None]:
    get_store().clear()
    yield
    get_store().clear()


@pytest.fixture(autouse=True)
def _private_var_dir(settings, tmp_path):
    """Matcher lock files of the tests live apart from a running development instance."""
    settings.VAR_DIR = tmp_path


@pytest.fixture
def markets(db) -> dict[str, Market]:
    demo.seed()
    return {m.symbol: m for m in Market.objects.select_related("base", "quote")}


def trader(email: str) -> User:
    user = UserFactory(email=email)
    for code, amount in (("USDT", "1000000"), ("ETH", "1000"), ("BTC", "100")):
        fund(user, Currency.objects.get(code=code), amount)
    return user


@pytest.fixture
def alice(markets) -> User:
    return trader("alice@example.com")


@pytest.fixture
def bob(markets) -> User:
    return trader("bob@example.com")


def staff_member(role: str | None, email: str) -> User:
    user = User.objects.create_user(email=email, password="pw-staff-12345", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def accountant_client(db) -> Client:
    """Staff holding ``monitoring.view_dashboard`` through the accountant role, 2FA-verified."""
    return admin_login(Client(), staff_member("accountant", "accountant@example.com"))
