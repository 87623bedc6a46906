"""A backlog's next batch is read and run through the book while the batch before it is
written (``MarketMatcher._commit_ahead``, MariaDB). The database does not hold the batch
in flight yet, so what is read ahead is taken as a read after its commit would return it:
the orders it changed with the values it gave them, the cancel requests of the orders it
put in the book, none of those it finished. Real matchers on MariaDB; the users act on
connections of their own."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, connections

from kootabase.errors import ServiceError
from orders.matcher import MarketMatcher
from orders.models import Order, OrderStatus, Trade
from orders.services import order_cancel, order_place
from orders.tests.conftest import assert_settled_consistently, trader

pytestmark = [pytest.mark.mariadb, pytest.mark.django_db(transaction=True)]

SYMBOL = "ETH-USDT"
BATCH = 10


def _place(user, side: str, price: str, quantity: str, **extra):
    return order_place(
        user=user,
        market_symbol=SYMBOL,
        side=side,
        type="limit",
        price=Decimal(price),
        quantity=Decimal(quantity),
        **extra,
    )


def _fillers(user, count: int) -> None:
    """Buys far below the market: they rest and fill a batch up to its size."""
    for _ in range(count):
        _place(user, "buy", "1000", "0.01")


def _elsewhere(act: Callable[[], None]) -> None:
    """Run ``act`` on another thread, with a database connection of its own (a user's
    request while the matcher works)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            act()
        except BaseException as exc:  # noqa: BLE001 - raised again below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive() and not errors, errors


class _UsersActBeforeTheFirstWrite(MarketMatcher):
    """Runs ``act`` (elsewhere) once, when its first batch has been worked out in memory
    and nothing of it is written yet."""

    act: Callable[[], None] | None = None

    def _accounts(self, batch, status):
        act, self.act = self.act, None
        if act is not None:
            _elsewhere(act)
        return super()._accounts(batch, status)


def _drain(matcher: MarketMatcher) -> list[int]:
    """Run rounds until there is no work; what each round took."""
    rounds = []
    while worked := matcher.run_once():
        rounds.append(worked)
    return rounds


def test_a_backlog_read_ahead_settles_consistently(markets):
    """A seeded mix, in three waves, with cancels of resting and pending orders between
    them: every wave is a backlog of many small batches, read ahead."""
    users = {user.pk: user for user in (trader(f"reader{i}@example.com") for i in range(4))}
    rng = random.Random(20261122)
    placed: list[tuple[int, int]] = []  # (user id, order id)
    matcher = MarketMatcher(symbol=SYMBOL, batch_size=BATCH)
    matcher.start()
    rounds: list[int] = []
    try:
        for _ in range(3):
            for _ in range(120):
                user, side, roll = users[rng.choice(sorted(users))], rng.choice(["buy", "sell"]), rng.random()
                quantity = str(Decimal(rng.randint(1, 40)) / 100)
                if roll < 0.15:
                    extra = (
                        {"quote_amount": Decimal(rng.randint(50, 500))}
                        if side == "buy"
                        else {"quantity": Decimal(quantity)}
                    )
                    order = order_place(user=user, market_symbol=SYMBOL, side=side, type="market", **extra)
                else:
                    tif = {"time_in_force": "ioc"} if roll < 0.25 else {}
                    order = _place(user, side, str(rng.randint(1995, 2005)), quantity, **tif)
                placed.append((user.pk, order.pk))
            # More cancels of resting orders than a batch takes: the batch read ahead must
            # leave out those the batch in flight has done.
            resting = Order.objects.filter(status__in=(OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED))
            resting = sorted(resting.values_list("user", "pk"))
            cancels = rng.sample(resting, min(len(resting), BATCH + 5)) + rng.sample(placed, 10)
            for user_id, order_id in cancels:
                try:
                    order_cancel(user=users[user_id], order_id=order_id)
                except ServiceError as exc:
                    assert exc.code == "order_not_cancellable"
            rounds += _drain(matcher)
    finally:
        matcher.stop()
    assert max(rounds) > BATCH, "a round took more than one batch: the next ones were read ahead"
    assert Trade.objects.count() > 50
    assert Order.objects.filter(status=OrderStatus.CANCELLED, reject_reason="user_cancel").count() > 2 * BATCH
    assert_settled_consistently(SYMBOL)


def test_an_order_the_batch_in_flight_filled_in_part_fills_in_full_ahead(markets):
    """The maker read ahead has, in the database, the values from before the batch in
    flight; it is matched with the ones that batch gave it."""
    alice, bob, carol = trader("alice@example.com"), trader("bob@example.com"), trader("carol@example.com")
    maker = _place(alice, "sell", "2000", "1")
    _place(bob, "buy", "2000", "0.4")
    _fillers(bob, BATCH - 2)
    _place(carol, "buy", "2000", "0.6")  # the first order of the next batch
    matcher = MarketMatcher(symbol=SYMBOL, batch_size=BATCH)
    matcher.start()
    try:
        assert matcher.run_once() == BATCH + 1
    finally:
        matcher.stop()
    maker.refresh_from_db()
    assert (maker.status, maker.filled_quantity, maker.hold_left) == (OrderStatus.FILLED, Decimal(1), 0)
    assert list(Trade.objects.order_by("trade_no").values_list("quantity", flat=True)) == [
        Decimal("0.4"),
        Decimal("0.6"),
    ]
    assert_settled_consistently(SYMBOL)


def test_a_cancel_requested_while_its_order_is_in_flight_is_not_overtaken(markets):
    """Alice's sell is in the batch being written, still ``pending`` in the database, when
    she cancels it and then Carol's crossing buy is placed: the batch read ahead cancels
    the sell first, as a batch read after the commit would, and the buy does not fill
    against it."""
    alice, bob, carol = trader("alice@example.com"), trader("bob@example.com"), trader("carol@example.com")
    sell = _place(alice, "sell", "2000", "1")
    _fillers(bob, BATCH - 1)
    buy: list[Order] = []

    def cancel_then_cross() -> None:
        order_cancel(user=alice, order_id=sell.pk)
        buy.append(_place(carol, "buy", "2000", "1"))

    matcher = _UsersActBeforeTheFirstWrite(symbol=SYMBOL, batch_size=BATCH)
    matcher.act = cancel_then_cross
    matcher.start()
    try:
        assert matcher.run_once() == BATCH + 2  # the batch; then the cancel and the buy, read ahead
    finally:
        matcher.stop()
    sell.refresh_from_db()
    assert (sell.status, sell.reject_reason, sell.filled_quantity) == (OrderStatus.CANCELLED, "user_cancel", 0)
    assert Order.objects.get(pk=buy[0].pk).status == OrderStatus.OPEN
    assert not Trade.objects.exists()
    assert_settled_consistently(SYMBOL)


def test_a_batch_that_fails_in_flight_is_undone_with_the_one_read_ahead(markets):
    """A write of the batch in flight is refused by the server: that batch rolls back, the
    one read ahead is dropped with the book (rebuilt from the database), and both are
    taken again once the server accepts."""
    alice, bob = trader("alice@example.com"), trader("bob@example.com")
    for _ in range(2 * BATCH):  # every buy fills against a sell: a trade for each pair
        _place(alice, "sell", "2000", "0.1")
        _place(bob, "buy", "2000", "0.1")
    with connection.cursor() as cursor:  # the server refuses the second trade
        cursor.execute(
            "CREATE TRIGGER refuse_second_trade BEFORE INSERT ON orders_trade FOR EACH ROW "
            "BEGIN IF NEW.trade_no = 2 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF; END"
        )
    matcher = MarketMatcher(symbol=SYMBOL, batch_size=BATCH)
    matcher.start()
    try:
        try:
            with pytest.raises(DatabaseError, match="refused"):
                matcher.run_once()
        finally:
            with connection.cursor() as cursor:
                cursor.execute("DROP TRIGGER refuse_second_trade")
        assert not Trade.objects.exists()
        assert Order.objects.filter(status=OrderStatus.PENDING).count() == 4 * BATCH
        state = matcher.book.state()  # rebuilt from the database: nothing of either batch
        assert (state.last_seq, state.bids, state.asks) == (0, [], [])
        assert sum(_drain(matcher)) == 4 * BATCH
    finally:
        matcher.stop()
    assert Trade.objects.count() == 2 * BATCH
    assert_settled_consistently(SYMBOL)
