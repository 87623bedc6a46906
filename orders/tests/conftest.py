"""Orders fixtures: the demo markets and currencies, two funded traders and their API
clients, what a rejected request must leave as it was, and what a drained market must
agree with. Other apps' tests import them (``from orders.tests.conftest import markets, ...``)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from rest_framework.test import APIClient

from orders import demo
from orders.models import Market, Order, OrderStatus, Trade
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


LIVE = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNTRIGGERED)
FINAL = (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED)


def assert_settled_consistently(symbol: str) -> None:
    """After the matcher of ``symbol`` (the only market with orders) has drained its
    queues: every order is final or resting and agrees with its trades, no fill exists
    twice, every locked balance is exactly the holds of its owner's live orders, the
    ledger audit passes, and the book rebuilt from the database equals a replay of every
    command the orders table records."""
    from matching.engine import OrderBook
    from orders.models import MatcherState
    from wallets.services import ledger_audit_run

    # Every order is final or resting; nothing waits.
    assert not Order.objects.filter(status=OrderStatus.PENDING).exists()
    assert not Order.objects.filter(cancel_requested=True, status__in=LIVE).exists()

    # No fill exists twice: trade numbers are exactly 1..N and the state agrees.
    numbers = sorted(Trade.objects.values_list("trade_no", flat=True))
    assert numbers == list(range(1, len(numbers) + 1))
    assert MatcherState.objects.get(market__symbol=symbol).last_trade_no == len(numbers)

    # Orders agree with their trades.
    filled, quote, fees = defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal)
    for trade in Trade.objects.all():
        for order_id, fee in ((trade.maker_order_id, trade.maker_fee), (trade.taker_order_id, trade.taker_fee)):
            filled[order_id] += trade.quantity
            quote[order_id] += trade.quote_amount
            fees[order_id] += fee
    holds: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for order in Order.objects.all():
        assert order.filled_quantity == filled[order.pk], order.pk
        assert order.filled_quote == quote[order.pk], order.pk
        assert order.fee_paid == fees[order.pk], order.pk
        if order.status in FINAL:
            assert order.hold_left == 0, (order.pk, order.status, order.hold_left)
        else:
            holds[(order.user_id, order.hold_currency_id)] += order.hold_left
        if order.status == OrderStatus.OPEN:
            assert order.filled_quantity == 0
        if order.status == OrderStatus.PARTIALLY_FILLED:
            assert 0 < order.filled_quantity < order.quantity
        if order.status == OrderStatus.FILLED and order.quantity is not None:
            assert order.filled_quantity == order.quantity

    # Every locked balance is exactly the holds of its owner's live orders.
    for account in LedgerAccount.objects.filter(kind=AccountKind.LOCKED, user__isnull=False):
        assert account.balance == holds[(account.user_id, account.currency_id)], account

    assert ledger_audit_run(store=False).ok

    # The book rebuilt from the database equals a replay of every recorded command.
    rebuilt, commands = recorded_commands(symbol)
    assert [c.seq for c in commands] == list(range(1, len(commands) + 1)), "every sequence number is recorded"
    replay = OrderBook()
    for command in commands:
        replay.apply(command)
    assert replay.state() == rebuilt
