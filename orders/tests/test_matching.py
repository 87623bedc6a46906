from __future__ import annotations

from decimal import Decimal

import pytest

from orders.matcher import FencingError, MarketMatcher, MatcherLockError
from orders.models import Market, MatcherState, Order, Trade
from orders.tests.conftest import balance, fees_balance, world_state
from wallets.models import AccountKind, JournalEntry
from wallets.services import ledger_audit_run

URL = "/api/v1/orders"


def run_matcher(symbol: str = "ETH-USDT") -> MarketMatcher:
    """Start a matcher, drain its queue, stop it (releasing the lock)."""
    matcher = MarketMatcher(symbol=symbol)
    matcher.start()
    try:
        while matcher.run_once():
            pass
    finally:
        matcher.stop()
    return matcher


def place(client, **fields) -> dict:
    body = {"market": "ETH-USDT", "type": "limit", **fields}
    response = client.post(URL, body)
    assert response.status_code == 201, response.json()
    return response.json()


def status_of(body: dict) -> str:
    return Order.objects.get(pk=body["id"]).status


def assert_audit_ok():
    run = ledger_audit_run(store=False)
    assert run.ok, run.findings


def test_two_users_cross_and_settle_with_fees(alice_client, bob_client, alice, bob, usdt, eth):
    sell = place(alice_client, side="sell", price="2000", quantity="1")
    buy = place(bob_client, side="buy", price="2000", quantity="1")
    run_matcher()
    assert (status_of(sell), status_of(buy)) == ("filled", "filled")
    trade = Trade.objects.get()
    assert (trade.trade_no, trade.price, trade.quantity, trade.quote_amount) == (1, 2000, 1, 2000)
    assert (trade.maker_order_id, trade.taker_order_id, trade.taker_side) == (sell["id"], buy["id"], "buy")
    assert (trade.maker_fee, trade.taker_fee) == (Decimal(2), Decimal(4))
    # Alice sold 1 ETH for 2000 less the 0.1 % maker fee; Bob paid 2000 plus the 0.2 % taker fee.
    assert balance(alice, usdt) == Decimal("101998")
    assert (balance(alice, eth), balance(alice, eth, AccountKind.LOCKED)) == (Decimal(99), 0)
    assert (balance(bob, usdt), balance(bob, usdt, AccountKind.LOCKED)) == (Decimal("97996"), 0)
    assert balance(bob, eth) == Decimal(101)
    assert fees_balance(usdt) == Decimal(6)
    assert JournalEntry.objects.filter(idempotency_key="trade:ETH-USDT:1").exists()
    state = MatcherState.objects.get()
    assert (state.last_seq, state.last_trade_no) == (2, 1)
    assert_audit_ok()

    trades = bob_client.get("/api/v1/trades").json()["results"]
    assert [(t["side"], t["role"], t["price"], t["quantity"], t["fee"]) for t in trades] == [
        ("buy", "taker", "2000", "1", "4")
    ]
    mine = alice_client.get("/api/v1/trades").json()["results"]
    assert [(t["side"], t["role"], t["fee"], t["order_id"]) for t in mine] == [("sell", "maker", "2", sell["id"])]
    detail = bob_client.get(f"{URL}/{buy['id']}").json()
    assert (detail["status"], detail["filled_quantity"], detail["average_price"], detail["fee_paid"]) == (
        "filled",
        "1",
        "2000",
        "4",
    )


def test_partial_fill_rests_the_remainder(alice_client, bob_client, alice, bob, usdt, eth):
    sell = place(alice_client, side="sell", price="2000", quantity="2")
    buy = place(bob_client, side="buy", price="2000", quantity="0.5")
    run_matcher()
    order = Order.objects.get(pk=sell["id"])
    assert (order.status, order.filled_quantity, order.hold_left) == ("partially_filled", Decimal("0.5"), 1.5)
    assert balance(alice, eth, AccountKind.LOCKED) == Decimal("1.5")
    assert status_of(buy) == "filled"
    buy2 = place(bob_client, side="buy", price="2000", quantity="1.5")
    run_matcher()
    assert (status_of(sell), status_of(buy2)) == ("filled", "filled")
    assert balance(alice, eth, AccountKind.LOCKED) == 0
    assert balance(alice, usdt) == Decimal("100000") + Decimal("4000") - Decimal("4")
    assert_audit_ok()


def test_price_improvement_is_released(alice_client, bob_client, alice, bob, usdt):
    place(alice_client, side="sell", price="1990", quantity="1")
    buy = place(bob_client, side="buy", price="2000", quantity="1")
    assert balance(bob, usdt, AccountKind.LOCKED) == Decimal("2004")
    run_matcher()
    order = Order.objects.get(pk=buy["id"])
    assert (order.status, order.filled_quote, order.fee_paid, order.hold_left) == ("filled", 1990, Decimal("3.98"), 0)
    assert balance(bob, usdt, AccountKind.LOCKED) == 0
    assert balance(bob, usdt) == Decimal("100000") - Decimal("1993.98")
    assert JournalEntry.objects.get(idempotency_key=f"release:{order.pk}").legs.count() == 2
    assert_audit_ok()


def test_a_resting_order_pays_the_maker_fee_when_it_fills_later(alice_client, bob_client, alice, bob, usdt):
    buy = place(bob_client, side="buy", price="2000", quantity="1")
    run_matcher()
    assert status_of(buy) == "open"
    place(alice_client, side="sell", price="1990", quantity="1")  # crosses at the maker's price
    run_matcher()
    order = Order.objects.get(pk=buy["id"])
    assert (order.status, order.fee_paid, order.taker_quote) == ("filled", Decimal(2), 0)
    assert balance(bob, usdt) == Decimal("100000") - Decimal("2002")
    assert balance(alice, usdt) == Decimal("100000") + Decimal("2000") - Decimal("4")
    assert_audit_ok()


def test_market_buy_by_quote_amount_spends_at_most_the_amount(alice_client, bob_client, alice, bob, usdt, eth):
    place(alice_client, side="sell", price="2000", quantity="1")
    buy = place(bob_client, side="buy", type="market", quote_amount="1000")
    run_matcher()
    order = Order.objects.get(pk=buy["id"])
    assert (order.status, order.filled_quantity, order.filled_quote, order.fee_paid) == (
        "filled",
        Decimal("0.499"),
        Decimal("998"),
        Decimal("1.996"),
    )
    assert balance(bob, usdt) == Decimal("100000") - Decimal("999.996")
    assert balance(bob, usdt, AccountKind.LOCKED) == 0
    assert balance(bob, eth) == Decimal("100.499")
    assert_audit_ok()


def test_market_order_without_liquidity_expires_and_releases(bob_client, bob, usdt):
    buy = place(bob_client, side="buy", type="market", quote_amount="1000")
    run_matcher()
    order = Order.objects.get(pk=buy["id"])
    assert (order.status, order.reject_reason, order.hold_left) == ("expired", "ioc_remainder", 0)
    assert balance(bob, usdt) == Decimal("100000")
    assert_audit_ok()


def test_post_only_that_would_take_is_rejected_and_released(alice_client, bob_client, bob, usdt):
    place(alice_client, side="sell", price="2000", quantity="1")
    buy = place(bob_client, side="buy", price="2000", quantity="1", post_only=True)
    run_matcher()
    order = Order.objects.get(pk=buy["id"])
    assert (order.status, order.reject_reason) == ("rejected", "post_only_would_take")
    assert balance(bob, usdt) == Decimal("100000")
    assert_audit_ok()


def test_cancel_releases_the_hold(bob_client, bob, usdt):
    buy = place(bob_client, side="buy", price="1900", quantity="1")
    run_matcher()
    assert status_of(buy) == "open"
    response = bob_client.delete(f"{URL}/{buy['id']}")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    assert balance(bob, usdt, AccountKind.LOCKED) == Decimal("1903.8")  # not before the matcher cancels
    run_matcher()
    order = Order.objects.get(pk=buy["id"])
    assert (order.status, order.reject_reason, order.hold_left) == ("cancelled", "user_cancel", 0)
    assert (balance(bob, usdt), balance(bob, usdt, AccountKind.LOCKED)) == (Decimal("100000"), 0)
    again = bob_client.delete(f"{URL}/{buy['id']}")
    assert (again.status_code, again.json()["code"]) == (409, "order_not_cancellable")
    assert_audit_ok()


def test_pending_order_cancelled_before_the_matcher_never_enters_the_book(alice_client, bob_client, bob, usdt):
    buy = place(bob_client, side="buy", price="2000", quantity="1")
    assert bob_client.delete(f"{URL}/{buy['id']}").status_code == 202
    place(alice_client, side="sell", price="2000", quantity="1")
    run_matcher()
    assert status_of(buy) == "cancelled"
    assert not Trade.objects.exists()
    assert balance(bob, usdt) == Decimal("100000")
    assert_audit_ok()


def test_an_accepted_cancel_is_not_overtaken_by_an_order_the_matcher_has_not_taken(
    alice_client, bob_client, alice, bob, eth, usdt
):
    sell = place(alice_client, side="sell", price="2000", quantity="1")
    run_matcher()
    assert alice_client.delete(f"{URL}/{sell['id']}").status_code == 202
    buy = place(bob_client, side="buy", price="2000", quantity="1")  # one batch with the cancel
    matcher = run_matcher()
    assert (status_of(sell), status_of(buy)) == ("cancelled", "open")
    assert not Trade.objects.exists()
    assert (balance(alice, eth), balance(alice, eth, AccountKind.LOCKED)) == (Decimal(100), 0)
    cancelled, placed = Order.objects.get(pk=sell["id"]), Order.objects.get(pk=buy["id"])
    assert cancelled.cancel_seq < placed.seq == matcher.last_seq  # replayable in this order
    assert_audit_ok()


def drain(matcher: MarketMatcher) -> int:
    done = 0
    while worked := matcher.run_once():
        done += worked
    return done


def test_the_heartbeat_after_a_failed_batch_does_not_record_its_counters(alice_client, bob_client, eth_usdt):
    """A batch that failed and whose rebuild failed too (a database outage) leaves the
    matcher's counters ahead of what is committed; a heartbeat on a halted market must not
    store them (trade numbers would skip)."""
    place(alice_client, side="sell", price="2000", quantity="1")
    place(bob_client, side="buy", price="2000", quantity="1")
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        assert drain(matcher) == 2
        committed = MatcherState.objects.values_list("last_seq", "last_trade_no").get()
        matcher.last_seq, matcher.last_trade_no, matcher.book = committed[0] + 5, committed[1] + 3, None
        Market.objects.filter(pk=eth_usdt.pk).update(status=Market.Status.HALTED)
        matcher._last_heartbeat = 0.0  # due
        assert matcher.run_once() == 0
        assert MatcherState.objects.values_list("last_seq", "last_trade_no").get() == committed
        assert (matcher.last_seq, matcher.last_trade_no) == committed and matcher.book is not None
    finally:
        matcher.stop()


def test_cancel_all_of_mine(alice_client, bob_client, alice, bob, usdt):
    mine = [place(bob_client, side="buy", price=p, quantity="1")["id"] for p in ("1900", "1901")]
    other = place(alice_client, side="buy", price="1902", quantity="1")
    response = bob_client.delete(URL + "?market=ETH-USDT")
    assert response.status_code == 202
    assert sorted(response.json()["cancel_requested"]) == mine
    run_matcher()
    assert [status_of({"id": i}) for i in mine] == ["cancelled", "cancelled"]
    assert status_of(other) == "open"
    assert balance(bob, usdt) == Decimal("100000")
    assert_audit_ok()


def test_cancelling_a_filled_order_is_refused(alice_client, bob_client, unchanged):
    sell = place(alice_client, side="sell", price="2000", quantity="1")
    place(bob_client, side="buy", price="2000", quantity="1")
    run_matcher()
    with unchanged():
        response = alice_client.delete(f"{URL}/{sell['id']}")
    assert (response.status_code, response.json()["code"]) == (409, "order_not_cancellable")


def test_self_trade_cancels_the_resting_order(bob_client, bob, usdt, eth):
    sell = place(bob_client, side="sell", price="2000", quantity="1")
    buy = place(bob_client, side="buy", price="2000", quantity="1")
    run_matcher()
    assert Order.objects.get(pk=sell["id"]).reject_reason == "self_trade"
    assert (status_of(sell), status_of(buy)) == ("cancelled", "open")
    assert not Trade.objects.exists()
    assert balance(bob, eth, AccountKind.LOCKED) == 0
    assert_audit_ok()


def test_stop_limit_waits_then_triggers(alice_client, bob_client, alice, bob):
    stop = place(bob_client, side="buy", type="stop-limit", stop_price="2010", price="2020", quantity="1")
    place(alice_client, side="sell", price="2000", quantity="1")
    place(alice_client, side="sell", price="2015", quantity="1")
    run_matcher()
    assert status_of(stop) == "untriggered"
    place(bob_client, side="buy", price="2000", quantity="1")  # last price 2000: no trigger
    run_matcher()
    assert status_of(stop) == "untriggered"
    place(bob_client, side="buy", price="2015", quantity="0.5")  # trades at 2015 >= 2010: fires
    run_matcher()
    order = Order.objects.get(pk=stop["id"])
    assert (order.status, order.filled_quantity) == ("partially_filled", Decimal("0.5"))
    assert_audit_ok()


def test_stop_price_on_the_wrong_side_of_the_last_price(alice_client, bob_client, unchanged):
    place(alice_client, side="sell", price="2000", quantity="1")
    place(bob_client, side="buy", price="2000", quantity="1")
    run_matcher()
    with unchanged():
        below = alice_client.post(
            URL,
            {
                "market": "ETH-USDT",
                "side": "buy",
                "type": "stop-limit",
                "stop_price": "1990",
                "price": "2000",
                "quantity": "1",
            },
        )
        above = alice_client.post(
            URL,
            {
                "market": "ETH-USDT",
                "side": "sell",
                "type": "stop-limit",
                "stop_price": "2010",
                "price": "2000",
                "quantity": "1",
            },
        )
    assert (below.status_code, below.json()["code"]) == (400, "stop_price_wrong_side")
    assert (above.status_code, above.json()["code"]) == (400, "stop_price_wrong_side")


def test_restart_rebuilds_the_book_with_time_priority(alice_client, bob_client, alice, bob):
    first = place(alice_client, side="sell", price="2000", quantity="1")
    second = place(alice_client, side="sell", price="2000", quantity="1")
    better = place(alice_client, side="sell", price="1999", quantity="0.5")
    bid = place(bob_client, side="buy", price="1900", quantity="1")
    run_matcher()
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        assert [r.order_id for r in matcher.book.resting_orders(2)] == [better["id"], first["id"], second["id"]]
        assert [r.order_id for r in matcher.book.resting_orders(1)] == [bid["id"]]
    finally:
        matcher.stop()
    taker = place(bob_client, side="buy", price="2000", quantity="1")
    run_matcher()
    assert (status_of(better), status_of(first), status_of(second)) == ("filled", "partially_filled", "open")
    assert Order.objects.get(pk=taker["id"]).filled_quantity == 1
    assert_audit_ok()


def test_a_failed_batch_changes_nothing_and_is_retried(alice_client, bob_client, alice):
    place(alice_client, side="sell", price="2000", quantity="1")
    place(bob_client, side="buy", price="2000", quantity="1")
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        before = world_state()
        # Another writer takes the market over between two batches: this one must not commit.
        intruder = MarketMatcher(symbol="ETH-USDT")
        intruder.start(take_lock=False)
        with pytest.raises(FencingError):
            matcher.run_once()
        assert world_state() == before
        assert intruder.run_once() == 2
        assert Trade.objects.count() == 1
    finally:
        matcher.stop()
    assert_audit_ok()


def test_a_second_matcher_is_refused(markets):
    first = MarketMatcher(symbol="ETH-USDT")
    first.start()
    try:
        with pytest.raises(MatcherLockError):
            MarketMatcher(symbol="ETH-USDT").start()
        other = MarketMatcher(symbol="BTC-USDT")  # another market is independent
        other.start()
        other.stop()
    finally:
        first.stop()
    again = MarketMatcher(symbol="ETH-USDT")
    again.start()
    again.stop()


def test_orders_not_processed_stay_pending_for_the_next_matcher(alice_client, bob_client):
    orders = [place(bob_client, side="buy", price=str(1900 + i), quantity="0.01") for i in range(5)]
    matcher = MarketMatcher(symbol="ETH-USDT", batch_size=2)
    matcher.start()
    try:
        assert matcher.run_once() == 2
    finally:
        matcher.stop()
    assert [status_of(o) for o in orders] == ["open", "open", "pending", "pending", "pending"]
    run_matcher()
    assert [status_of(o) for o in orders] == ["open"] * 5
    assert list(Order.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
