"""Group commit: concurrent requests' orders placed together by the process's placement
thread, each answered with its own outcome (MariaDB: the thread has its own connection,
and the test holds row locks to make a group form)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from decimal import Decimal

import pytest
from django.db import connection, transaction

from kootabase.errors import ServiceError
from orders import group_placement
from orders.models import Order
from orders.services import Placement, place_request
from orders.tests.conftest import balance, client_of, trader
from wallets.locks import ledger_accounts_lock
from wallets.models import AccountKind, LedgerAccount
from wallets.services import ledger_audit_run

pytestmark = [pytest.mark.mariadb, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def grouping(settings, markets):
    settings.ORDER_PLACEMENT_GROUPING = True
    settings.ORDER_PLACEMENT_GROUP_MAX = 50
    return group_placement._group_placer()


def _request(user, quantity: str, client_order_id: str):
    return place_request(
        user=user,
        market_symbol="ETH-USDT",
        side="buy",
        type="limit",
        price=Decimal(2000),
        quantity=Decimal(quantity),
        client_order_id=client_order_id,
    )


def _wait_for(condition, timeout: float = 10, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def _a_lock_wait() -> bool:
    """A transaction waits for a row lock (InnoDB refreshes this table at most every 0.1 s)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'")
        return cursor.fetchone()[0] > 0


def test_waiting_orders_are_placed_as_one_group_each_with_its_own_outcome(grouping, usdt):
    alice, bob = trader("alice@example.com"), trader("bob@example.com")
    outcomes: dict[str, Placement | ServiceError] = {}

    def place(user, quantity: str, client_order_id: str) -> None:
        try:
            outcomes[client_order_id] = group_placement.order_place_grouped(_request(user, quantity, client_order_id))
        except ServiceError as exc:
            outcomes[client_order_id] = exc
        finally:
            connection.close()

    first = threading.Thread(target=place, args=(alice, "1", "first"))
    rest = [
        threading.Thread(target=place, args=(alice, "30", "a-30")),  # 60,120 of the 96,994 left
        threading.Thread(target=place, args=(alice, "30", "a-30-more")),  # refused: 36,874 left
        threading.Thread(target=place, args=(bob, "2", "b-2")),
        threading.Thread(target=place, args=(alice, "18", "a-18")),  # 36,072: fits
    ]
    alice_accounts = LedgerAccount.objects.filter(user=alice).values_list("pk", flat=True)
    with transaction.atomic():
        list(ledger_accounts_lock(account_ids=alice_accounts))  # the first group waits on these rows
        first.start()
        _wait_for(_a_lock_wait, every=0.25)  # the placement thread is inside the first group's transaction
        for waiting, thread in enumerate(rest, start=1):
            thread.start()
            _wait_for(lambda waiting=waiting: grouping._waiting.qsize() == waiting)  # in this order
    for thread in (first, *rest):
        thread.join(30)
        assert not thread.is_alive()

    assert isinstance(outcomes["a-30-more"], ServiceError)
    assert outcomes["a-30-more"].code == "insufficient_funds"
    placed = {cid: o.order for cid, o in outcomes.items() if isinstance(o, Placement)}
    assert sorted(placed) == ["a-18", "a-30", "b-2", "first"]
    # One group for the first order, one for the four that waited: each group's rows
    # carry the one time of its insert.
    times = dict(Order.objects.values_list("client_order_id", "created_at"))
    assert len({times["a-30"], times["b-2"], times["a-18"]}) == 1
    assert times["first"] != times["a-30"]
    assert sorted(times) == ["a-18", "a-30", "b-2", "first"]
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("2004") + Decimal("60120") + Decimal("36072")
    assert ledger_audit_run().ok


def test_a_request_through_the_api_is_answered_by_the_placement_thread(grouping, usdt):
    alice = trader("alice@example.com")
    client = client_of(alice)
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000", "quantity": "1.5"}
    placed = client.post("/api/v1/orders", {**body, "client_order_id": "api-1"})
    again = client.post("/api/v1/orders", {**body, "client_order_id": "api-1"})
    refused = client.post("/api/v1/orders", {**body, "quantity": "9999"})
    assert (placed.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == placed.json()["id"]
    assert (refused.status_code, refused.json()["code"]) == (400, "insufficient_funds")
    assert Order.objects.count() == 1
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("3006")


def test_a_failure_reaches_the_waiting_request_and_the_thread_goes_on(grouping, usdt):
    alice = trader("alice@example.com")
    broken = _request(alice, "1", "broken")._replace(fields={"no_such_field": 1})
    with pytest.raises(TypeError):
        grouping.place(broken)
    placed = group_placement.order_place_grouped(_request(alice, "1", "after"))
    assert placed.created and placed.order.client_order_id == "after"
    assert list(Order.objects.values_list("client_order_id", flat=True)) == ["after"]


def _hold_group_open(alice, requests: list[tuple[str, object]], outcomes: dict) -> list[threading.Thread]:
    """Start a first request of alice's that waits on her locked rows, then queue
    ``requests`` (name, request) behind it in this order: they form the next group(s)."""

    def place(name: str, request) -> None:
        try:
            outcomes[name] = group_placement.order_place_grouped(request)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[name] = exc
        finally:
            connection.close()

    placer = group_placement._group_placer()
    threads = [threading.Thread(target=place, args=("first", _request(alice, "1", "first")))]
    threads += [threading.Thread(target=place, args=item) for item in requests]
    alice_accounts = LedgerAccount.objects.filter(user=alice).values_list("pk", flat=True)
    with transaction.atomic():
        list(ledger_accounts_lock(account_ids=alice_accounts))
        threads[0].start()
        _wait_for(_a_lock_wait, every=0.25)
        for waiting, thread in enumerate(threads[1:], start=1):
            thread.start()
            _wait_for(lambda waiting=waiting: placer._waiting.qsize() == waiting)
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    return threads


def test_an_unexpected_error_fails_only_its_own_request(grouping, usdt):
    """The group of three fails as a whole (one request is broken): each is placed again
    on its own, and only the broken one fails."""
    alice, bob = trader("alice@example.com"), trader("bob@example.com")
    outcomes: dict = {}
    broken = _request(bob, "1", "broken")._replace(fields={"no_such_field": 1})
    _hold_group_open(
        alice, [("b-1", _request(bob, "1", "b-1")), ("broken", broken), ("b-2", _request(bob, "2", ""))], outcomes
    )
    assert isinstance(outcomes["broken"], TypeError)
    assert outcomes["b-1"].created and outcomes["b-2"].created
    assert len(outcomes["b-2"].order.client_order_id) == 32  # made for the request that had none
    assert sorted(Order.objects.values_list("client_order_id", flat=True)) == sorted(
        ["first", "b-1", outcomes["b-2"].order.client_order_id]
    )
    assert balance(bob, usdt, AccountKind.LOCKED) == Decimal("2004") + Decimal("4008")
    assert ledger_audit_run().ok


def test_a_repeated_client_order_id_waits_for_the_next_group(grouping, usdt):
    alice, bob = trader("alice@example.com"), trader("bob@example.com")
    outcomes: dict = {}
    _hold_group_open(
        alice,
        [
            ("a-x", _request(alice, "1", "x")),
            ("b-1", _request(bob, "1", "b-1")),
            ("a-x-again", _request(alice, "1", "x")),  # a repeat: it starts the next group
            ("b-2", _request(bob, "1", "b-2")),
        ],
        outcomes,
    )
    assert outcomes["a-x"].created and not outcomes["a-x-again"].created
    assert outcomes["a-x-again"].order.pk == outcomes["a-x"].order.pk
    times = dict(Order.objects.values_list("client_order_id", "created_at"))
    assert times["x"] == times["b-1"] != times["b-2"]  # two groups after the first
    assert sorted(times) == ["b-1", "b-2", "first", "x"]
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("2004") * 2
    assert ledger_audit_run().ok


def test_requests_left_by_a_stopped_thread_are_placed_by_a_new_one(markets, usdt):
    alice = trader("alice@example.com")
    placer = group_placement.GroupPlacer(group_max=50)
    stopped = threading.Thread(target=lambda: None)
    stopped.start()
    stopped.join()
    placer._thread = stopped  # the placement thread ended with a request still queued
    left: Future = Future()
    placer._waiting.put((_request(alice, "1", "left"), left))
    placed = placer.place(_request(alice, "1", "next"))
    assert placed.created and left.result(timeout=10).created
    assert placer._thread is not stopped and placer._thread.is_alive()
    assert sorted(Order.objects.values_list("client_order_id", flat=True)) == ["left", "next"]
