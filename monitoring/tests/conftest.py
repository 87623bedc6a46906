"""Monitoring fixtures: an empty shared store, the demo markets with two funded traders
(the market-data fixtures), staff with the dashboard permission, and the blockchain fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from accounts.tests.helpers import admin_login, staff_member
from blockchain.tests.conftest import chain, eth_asset, network, usdt_asset  # noqa: F401 - fixtures
from marketdata.tests.conftest import _private_var_dir, alice, bob, markets  # noqa: F401 - fixtures
from monitoring.services import request_counts_discard
from monitoring.store import get_store


@pytest.fixture(autouse=True)
def _empty_store() -> Iterator[None]:
    request_counts_discard()  # what earlier tests' requests counted and this process has not written
    get_store().clear()
    yield
    request_counts_discard()
    get_store().clear()


@pytest.fixture
def accountant_client(db) -> Client:
    """Staff holding ``monitoring.view_dashboard`` through the accountant role, 2FA-verified."""
    return admin_login(Client(), staff_member("accountant@example.com", "accountant"))
