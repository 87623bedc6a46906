"""The matcher's lock over a long life: a lock lost with its connection is taken again or
given up, a market taken over stops only its own matcher, and shutdown releases every
lock it can (docs/orders.md, "One writer per market")."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection, connections

from kootabase.tests.servers import kill_connection
from orders.matcher import FencingError, LockLost, MarketLock, MarketMatcher, MatcherLockError, matchers_run
from orders.models import Order, OrderStatus
from orders.services import order_place
from orders.tests.conftest import trader
from wallets.models import Currency
from wallets.tests.factories import fund

pytestmark = pytest.mark.django_db(transaction=True)


def _lock_connection_id(matcher: MarketMatcher) -> int:
    with matcher.lock._connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return cursor.fetchone()[0]


def _holder(lock: MarketLock) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT IS_USED_LOCK(%s)", [lock.name])
        return cursor.fetchone()[0]


def _cross(symbol: str, price: str, quantity: str) -> list[Order]:
    alice, bob = trader(f"alice-{symbol.lower()}@example.com"), trader(f"bob-{symbol.lower()}@example.com")
    base = Currency.objects.get(code=symbol.split("-")[0])
    fund(alice, base, quantity)
    common = {"market_symbol": symbol, "type": "limit", "price": Decimal(price), "quantity": Decimal(quantity)}
    return [order_place(user=alice, side="sell", **common), order_place(user=bob, side="buy", **common)]


def _statuses(orders: list[Order]) -> set[str]:
    return set(Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("status", flat=True))


@pytest.mark.mariadb
def test_the_lock_connection_is_not_closed_as_idle(markets):
    """The lock's connection is silent between checks: the server's idle timeout (8 hours by
    default) must not close it, which would free the lock under a running matcher."""
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        with matcher.lock._connection.cursor() as cursor:
            cursor.execute("SELECT @@session.wait_timeout")
            assert cursor.fetchone()[0] == MarketLock.IDLE_TIMEOUT
        assert _holder(matcher.lock) == _lock_connection_id(matcher)
    finally:
        matcher.stop()


@pytest.mark.mariadb
def test_a_lock_lost_with_its_connection_is_taken_again(markets):
    orders = _cross("ETH-USDT", "2000", "1")
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        kill_connection(_lock_connection_id(matcher))
        assert _holder(matcher.lock) is None  # freed: a second matcher could start now
        matcher.lock.verify()
        assert _holder(matcher.lock) == _lock_connection_id(matcher)
        with pytest.raises(MatcherLockError):
            MarketMatcher(symbol="ETH-USDT").start()
        assert matcher.run_once() == 2
    finally:
        matcher.stop()
    assert _statuses(orders) == {OrderStatus.FILLED}
    assert _holder(matcher.lock) is None


@pytest.mark.mariadb
def test_a_lock_taken_by_another_matcher_meanwhile_stops_this_one(markets):
    orders = _cross("ETH-USDT", "2000", "1")
    first = MarketMatcher(symbol="ETH-USDT")
    first.start()
    second = MarketMatcher(symbol="ETH-USDT")
    try:
        kill_connection(_lock_connection_id(first))
        second.start()  # the lock was free: the second matcher takes the market
        with pytest.raises(MatcherLockError):
            first.lock.verify()
        first._last_lock_check = 0.0  # the check is due
        with pytest.raises(LockLost):  # the epoch moved on: the market is the other's
            first.run_once()
        assert isinstance(LockLost("x"), FencingError)  # the run loops give the market up
        assert second.run_once() == 2
    finally:
        first.stop()
        second.stop()
    assert _statuses(orders) == {OrderStatus.FILLED}


@pytest.mark.mariadb
def test_a_lock_held_by_its_own_lost_connection_is_run_on_under_fencing(markets):
    """The server has not yet closed the lost connection (a network cut it did not notice),
    so the lock is still held, by nobody's matcher: the epoch is still this matcher's, so
    it runs on (fencing would refuse its batches if another started) and takes the lock
    back once that connection is gone."""
    orders = _cross("ETH-USDT", "2000", "1")
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    zombie = connections.create_connection("default")
    try:
        kill_connection(_lock_connection_id(matcher))
        with zombie.cursor() as cursor:  # stands for the old connection, still open on the server
            cursor.execute("SELECT GET_LOCK(%s, 0)", [matcher.lock.name])
        matcher._last_lock_check = 0.0
        assert matcher.run_once() == 2  # the check found the lock held elsewhere, and ran on
        assert _statuses(orders) == {OrderStatus.FILLED}
        zombie.close()  # the server closes it at last
        matcher._last_lock_check = 0.0
        matcher.run_once()
        assert _holder(matcher.lock) == _lock_connection_id(matcher)
    finally:
        zombie.close()
        matcher.stop()


@pytest.mark.mariadb
def test_the_run_loop_checks_its_lock_and_gives_up_a_market_taken_over(markets, monkeypatch):
    """``matchers_run`` checks each lock every few seconds (here every round): ETH-USDT's is
    lost and taken by another matcher, so this process gives that market up and runs on."""
    monkeypatch.setattr("orders.matcher.HEARTBEAT_EVERY", 0.0)
    eth_orders, btc_orders = _cross("ETH-USDT", "2000", "1"), _cross("BTC-USDT", "30000", "0.1")
    other = MarketMatcher(symbol="ETH-USDT")
    rounds = itertools.count()

    def should_stop() -> bool:
        turn = next(rounds)
        if turn == 0:  # started: ETH-USDT's lock connection dies, and another matcher starts
            with connection.cursor() as cursor:
                cursor.execute("SELECT IS_USED_LOCK(%s)", [other.lock.name])
                kill_connection(cursor.fetchone()[0])
            other.start()
        return turn > 3

    try:
        matchers_run(symbols=["ETH-USDT", "BTC-USDT"], should_stop=should_stop)
        assert _statuses(btc_orders) == {OrderStatus.FILLED}
        assert _statuses(eth_orders) == {OrderStatus.PENDING}  # left to the other matcher
        assert other.run_once() == 2
    finally:
        other.stop()
    assert _statuses(eth_orders) == {OrderStatus.FILLED}
    assert _holder(MarketLock("BTC-USDT")) is None  # released at shutdown


@pytest.mark.mariadb
def test_shutdown_releases_every_lock_when_one_connection_is_gone(markets):
    rounds = itertools.count()
    locks = [MarketLock("ETH-USDT"), MarketLock("BTC-USDT")]

    def should_stop() -> bool:
        if next(rounds) == 0:  # the first market's lock connection dies just before shutdown
            kill_connection(_holder(locks[0]))
            return True
        return False

    matchers_run(symbols=["ETH-USDT", "BTC-USDT"], should_stop=should_stop)
    assert [_holder(lock) for lock in locks] == [None, None]
    for symbol in ("ETH-USDT", "BTC-USDT"):  # both can be run again
        again = MarketMatcher(symbol=symbol)
        again.start()
        again.stop()


def test_a_market_taken_over_stops_only_its_own_matcher(markets):
    """Fencing alone (the other writer took no lock): ETH-USDT's batch is refused, the
    market is given up, and BTC-USDT's matcher in the same process runs on."""
    eth_orders, btc_orders = _cross("ETH-USDT", "2000", "1"), _cross("BTC-USDT", "30000", "0.1")
    intruder = MarketMatcher(symbol="ETH-USDT")
    rounds = itertools.count()

    def should_stop() -> bool:
        turn = next(rounds)
        if turn == 0:
            intruder.start(take_lock=False)  # a new epoch: the running matcher's is stale
        return turn > 3

    matchers_run(symbols=["ETH-USDT", "BTC-USDT"], should_stop=should_stop)
    assert _statuses(btc_orders) == {OrderStatus.FILLED}
    assert _statuses(eth_orders) == {OrderStatus.PENDING}
    assert intruder.run_once() == 2
    assert _statuses(eth_orders) == {OrderStatus.FILLED}
    again = MarketMatcher(symbol="ETH-USDT")  # its lock was released when it was given up
    again.start()
    again.stop()


def test_the_last_market_taken_over_ends_the_run(markets):
    _cross("ETH-USDT", "2000", "1")
    intruder = MarketMatcher(symbol="ETH-USDT")
    rounds = itertools.count()

    def should_stop() -> bool:
        if next(rounds) == 0:
            intruder.start(take_lock=False)
        return False

    with pytest.raises(FencingError):
        matchers_run(symbols=["ETH-USDT"], should_stop=should_stop)


_FILE_LOCK = pytest.mark.skipif(
    settings.DATABASE_VENDOR == "mysql", reason="the lock is a file on SQLite only (GET_LOCK is tested above)"
)


@_FILE_LOCK
def test_a_lock_file_removed_under_a_running_matcher_is_taken_again(markets):
    """SQLite's lock is a ``flock`` on a file: once the file is removed, another process
    would lock a new one. The check takes the lock again on the new file."""
    orders = _cross("ETH-USDT", "2000", "1")
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        matcher.lock.path.unlink()
        matcher._last_lock_check = 0.0  # the check is due
        assert matcher.run_once() == 2
        assert matcher.lock.path.exists()
        with pytest.raises(MatcherLockError):
            MarketMatcher(symbol="ETH-USDT").start()
    finally:
        matcher.stop()
    assert _statuses(orders) == {OrderStatus.FILLED}


@_FILE_LOCK
def test_a_lock_file_replaced_and_taken_by_another_matcher_gives_the_market_up(markets):
    first = MarketMatcher(symbol="ETH-USDT")
    first.start()
    second = MarketMatcher(symbol="ETH-USDT")
    try:
        first.lock.path.unlink()
        second.start()  # locks a new file: the first one's lock excludes nobody now
        first._last_lock_check = 0.0
        with pytest.raises(LockLost):
            first.run_once()
    finally:
        first.stop()
        second.stop()


@_FILE_LOCK
def test_a_replaced_lock_file_held_by_no_matcher_is_taken_once_free(markets):
    """The new file is locked by something that started no matcher (the epoch is still
    this matcher's): it runs on under fencing, and locks the file once it is free."""
    import fcntl

    orders = _cross("ETH-USDT", "2000", "1")
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        matcher.lock.path.unlink()
        with matcher.lock.path.open("a+b") as other:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            matcher._last_lock_check = 0.0
            assert matcher.run_once() == 2  # the check found the file held elsewhere, and ran on
        matcher._last_lock_check = 0.0  # the other holder is gone
        matcher.run_once()
        with pytest.raises(MatcherLockError):
            MarketMatcher(symbol="ETH-USDT").start()
    finally:
        matcher.stop()
    assert _statuses(orders) == {OrderStatus.FILLED}
