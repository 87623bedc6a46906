"""The matcher's poll for work reads the work, not the market's history or its book (MariaDB: the
server's own row counters, so the test does not depend on timing)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.matcher import AHEAD_BATCHES, MarketMatcher
from orders.models import Order, OrderStatus, OrderType, Side
from orders.tests.conftest import trader

pytestmark = pytest.mark.django_db

HISTORY = 3000


def _rows_read() -> int:
    """Rows this connection's statements have read so far: by key, in index order and by scan."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Handler_read%%'")
        return sum(int(value) for _, value in cursor.fetchall())


def _history(market, user, usdt, statuses=(OrderStatus.CANCELLED, OrderStatus.FILLED, OrderStatus.OPEN)) -> None:
    """What a market accumulates: finished orders (cancelled ones keep their
    ``cancel_requested`` flag, filled ones never had it) and a book of resting ones."""
    orders = []
    for i in range(HISTORY):
        status = statuses[i % len(statuses)]
        orders.append(
            Order(
                user=user,
                client_order_id=f"{status}-{i}",
                market=market,
                side=Side.BUY,
                type=OrderType.LIMIT,
                price=Decimal(2000),
                quantity=Decimal("0.01"),
                maker_fee_rate=Decimal("0.001"),
                taker_fee_rate=Decimal("0.002"),
                status=status,
                cancel_requested=status == OrderStatus.CANCELLED,
                book_priority=i if status == OrderStatus.OPEN else None,
                hold_currency=usdt,
                hold_amount=Decimal("20.04"),
                hold_left=Decimal("20.04") if status in (OrderStatus.OPEN, OrderStatus.PENDING) else Decimal(0),
            )
        )
    Order.objects.bulk_create(orders, batch_size=1000)


def _analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE orders_order")
        cursor.fetchall()


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)  # ANALYZE TABLE commits: the rows are removed after, not rolled back
def test_an_idle_poll_reads_neither_the_history_nor_the_book(eth_usdt, usdt):
    _history(eth_usdt, trader("history@example.com"), usdt)
    _analyze()
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start(take_lock=False)
    try:
        before = _rows_read()
        baseline = _rows_read() - before  # what reading the counters itself costs
        before = _rows_read()
        assert matcher.run_once() == 0
        read = _rows_read() - before - baseline
    finally:
        matcher.stop()
    # The market's row, and an index lookup or two that find nothing: not thousands.
    assert read < 50, f"an idle poll read {read} rows of a market with {HISTORY} orders"


@contextmanager
def _rows_read_by_order_reads(*on: Any) -> Iterator[list[tuple[str, int]]]:
    """(statement, rows it read) of each statement that reads ``orders_order`` on the
    connections ``on`` (the counters are read on the connection the thread uses at the
    time: the matcher's reading one while it reads ahead)."""
    found: list[tuple[str, int]] = []
    first = _rows_read()
    baseline = _rows_read() - first  # what reading the counters itself costs

    def measure(execute, sql, params, many, context):
        if not (sql.startswith("SELECT") and "orders_order" in sql):
            return execute(sql, params, many, context)
        before = _rows_read()
        try:
            return execute(sql, params, many, context)
        finally:
            found.append((sql, _rows_read() - before - baseline))

    with ExitStack() as stack:
        for each in on:
            stack.enter_context(each.execute_wrapper(measure))
        yield found


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)  # ANALYZE TABLE commits: the rows are removed after, not rolled back
def test_a_backlog_is_read_through_the_queue_indexes_not_the_history(eth_usdt, usdt):
    """A burst of pending orders behind a long history: the optimizer's statistics make a
    walk of the primary key (or the wrong index) look cheap, and it reads the history on
    every poll. Each read of the queues names its index."""
    user = trader("history@example.com")
    _history(eth_usdt, user, usdt, statuses=(OrderStatus.FILLED, OrderStatus.CANCELLED))
    # Then the burst: resting buys far below any sell, so nothing trades.
    _history(eth_usdt, user, usdt, statuses=(OrderStatus.PENDING,))
    _analyze()
    matcher = MarketMatcher(symbol="ETH-USDT", batch_size=20)
    matcher.start(take_lock=False)
    batches = 1 + AHEAD_BATCHES  # one read afresh, the next ones read ahead while it is written
    try:
        for _ in range(3):
            with _rows_read_by_order_reads(connection, matcher.reading_connection()) as reads:
                assert matcher.run_once() == 20 * batches
            assert len(reads) > batches and all(rows < 100 for _, rows in reads), reads
    finally:
        matcher.stop()
    assert Order.objects.filter(status=OrderStatus.OPEN).count() == 60 * batches


def order_reads_of(queries: CaptureQueriesContext) -> list[str]:
    """The WHERE clauses of the statements that read orders."""
    select = f"SELECT {connection.ops.quote_name('orders_order')}."
    return [q["sql"].split(" WHERE ", 1)[1] for q in queries.captured_queries if q["sql"].startswith(select)]


def test_an_idle_poll_is_one_statement_and_a_poll_reads_only_the_kinds_of_work_there_are(eth_usdt, usdt):
    from orders.services import order_cancel, order_place
    from orders.tests.conftest import trader

    alice = trader("alice@example.com")
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start(take_lock=False)
    try:
        assert matcher.run_once() == 0  # the first idle poll also writes the heartbeat
        with CaptureQueriesContext(connection) as idle:
            assert matcher.run_once() == 0
        order = order_place(
            user=alice, market_symbol="ETH-USDT", side="buy", type="limit", price=Decimal(1000), quantity=Decimal(1)
        )
        with CaptureQueriesContext(connection) as placing:
            assert matcher.run_once() == 1
        order_cancel(user=alice, order_id=order.pk)
        with CaptureQueriesContext(connection) as cancelling:
            assert matcher.run_once() == 1
    finally:
        matcher.stop()
    assert len(idle) == 1, idle.captured_queries
    order_reads = order_reads_of(placing)
    cancel_reads = order_reads_of(cancelling)
    assert len(order_reads) == 1 and "cancel_requested" not in order_reads[0]  # the pending ones only
    assert len(cancel_reads) == 1 and "cancel_requested" in cancel_reads[0]  # the cancels only


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_the_matcher_goes_on_after_its_database_connection_is_lost(markets):
    """A server restart, failover or network cut drops the matcher's connection: the round
    that fails on it is logged and the next one runs on a new connection."""
    import itertools

    from kootabase.tests.servers import kill_connection
    from orders.matcher import matchers_run
    from orders.services import order_place

    alice, bob = trader("alice@example.com"), trader("bob@example.com")
    common = {"market_symbol": "ETH-USDT", "type": "limit", "price": Decimal(2000), "quantity": Decimal(1)}
    sell, buy = order_place(user=alice, side="sell", **common), order_place(user=bob, side="buy", **common)
    rounds = itertools.count()

    def should_stop() -> bool:
        turn = next(rounds)
        if turn == 0:  # the matcher has started: its connection is dropped by the server
            with connection.cursor() as cursor:
                cursor.execute("SELECT CONNECTION_ID()")
                (lost,) = cursor.fetchone()
            kill_connection(lost)
        return turn > 4

    matchers_run(symbols=["ETH-USDT"], should_stop=should_stop)
    connection.close()
    statuses = set(Order.objects.filter(pk__in=[sell.pk, buy.pk]).values_list("status", flat=True))
    assert statuses == {OrderStatus.FILLED}
