"""Orders fixtures: the demo markets and currencies, two funded traders and their API
clients, and what a rejected request must leave as it was. Other apps' tests import
them (``from orders.tests.conftest import markets, ...``)."""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from rest_framework.test import APIClient

from orders import demo
from orders.models import Market, Order, Trade
from wallets.models import AccountKind, Currency, LedgerAccount
from wallets.tests.factories import UserFactory, fund, ledger_state, state_unchanged


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


def trader(email: str):
    """A user funded with 100000 USDT and 100 ETH (the demo markets must exist)."""
    user = UserFactory(email=email)
    for code, amount in (("USDT", "100000"), ("ETH", "100")):
        fund(user, Currency.objects.get(code=code), amount)
    return user


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def alice(markets):
    return trader("alice@example.com")


@pytest.fixture
def bob(markets):
    return trader("bob@example.com")


@pytest.fixture
def alice_client(alice) -> APIClient:
    return client_of(alice)


@pytest.fixture
def bob_client(bob) -> APIClient:
    return client_of(bob)


def balance(user, currency: Currency, kind: str = AccountKind.AVAILABLE) -> Decimal:
    account = LedgerAccount.objects.filter(user=user, currency=currency, kind=kind).first()
    return account.balance if account else Decimal(0)


def fees_balance(currency: Currency) -> Decimal:
    account = LedgerAccount.objects.filter(user=None, currency=currency, kind=AccountKind.FEES).first()
    return account.balance if account else Decimal(0)


def world_state() -> tuple:
    """Everything a rejected request must leave as it was: ledger, orders, trades."""
    return (
        *ledger_state(),
        list(Order.objects.order_by("pk").values_list("pk", "status", "cancel_requested", "hold_left")),
        Trade.objects.count(),
    )


@pytest.fixture
def unchanged():
    return partial(state_unchanged, world_state)


@pytest.fixture(autouse=True)
def _private_var_dir(settings, tmp_path):
    """Matcher lock files of the tests live apart from a running development instance."""
    settings.VAR_DIR = tmp_path


def recorded_commands(symbol: str) -> tuple[Any, list[Any]]:
    """The book a matcher of ``symbol`` rebuilds from the database, and every command the
    orders table records (each order's placement, ``seq``, and its cancel in the book,
    ``cancel_seq``), in sequence order: replayed from an empty book they must give the
    stored trades and that same book."""
    from matching.engine import Cancel
    from orders.matcher import MarketMatcher

    matcher = MarketMatcher(symbol=symbol)
    matcher.start()
    try:
        rebuilt = matcher.book.state()
        commands = []
        for order in Order.objects.filter(market__symbol=symbol).exclude(seq=None):
            commands.append(matcher._command(order, order.seq))
            if order.cancel_seq is not None:
                commands.append(Cancel(order.cancel_seq, order.pk))
    finally:
        matcher.stop()
    commands.sort(key=lambda command: command.seq)
    return rebuilt, commands
