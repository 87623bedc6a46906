from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from orders import demo
from orders.models import Market, Order, Trade
from wallets.models import AccountKind, Currency, JournalEntry, LedgerAccount, LedgerLeg
from wallets.tests.factories import UserFactory, fund


@pytest.fixture
def markets(db) -> dict[str, Market]:
    demo.seed()
    return {m.symbol: m for m in Market.objects.select_related("base", "quote")}


@pytest.fixture
def eth_usdt(markets) -> Market:
    return markets["ETH-USDT"]


@pytest.fixture
def usdt(markets) -> Currency:
    return Currency.objects.get(code="USDT")


@pytest.fixture
def eth(markets) -> Currency:
    return Currency.objects.get(code="ETH")


@pytest.fixture
def alice(markets):
    user = UserFactory(email="alice@example.com")
    fund(user, Currency.objects.get(code="USDT"), "100000")
    fund(user, Currency.objects.get(code="ETH"), "100")
    return user


@pytest.fixture
def bob(markets):
    user = UserFactory(email="bob@example.com")
    fund(user, Currency.objects.get(code="USDT"), "100000")
    fund(user, Currency.objects.get(code="ETH"), "100")
    return user


@pytest.fixture
def alice_client(alice) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def bob_client(bob) -> APIClient:
    client = APIClient()
    client.force_authenticate(bob)
    return client


def balance(user, currency: Currency, kind: str = AccountKind.AVAILABLE) -> Decimal:
    account = LedgerAccount.objects.filter(user=user, currency=currency, kind=kind).first()
    return account.balance if account else Decimal(0)


def fees_balance(currency: Currency) -> Decimal:
    account = LedgerAccount.objects.filter(user=None, currency=currency, kind=AccountKind.FEES).first()
    return account.balance if account else Decimal(0)


def world_state() -> tuple:
    """Everything a rejected request must leave as it was: ledger, orders, trades."""
    return (
        JournalEntry.objects.count(),
        LedgerLeg.objects.count(),
        list(LedgerAccount.objects.order_by("pk").values_list("pk", "balance")),
        list(Order.objects.order_by("pk").values_list("pk", "status", "cancel_requested", "hold_left")),
        Trade.objects.count(),
    )


@pytest.fixture
def unchanged():
    @contextmanager
    def check():
        before = world_state()
        yield
        assert world_state() == before

    return check


@pytest.fixture(autouse=True)
def _private_var_dir(settings, tmp_path):
    """Matcher lock files of the tests live apart from a running development instance."""
    settings.VAR_DIR = tmp_path
