"""A market whose tick or lot size changed while it had live orders: the orders no longer
on the new sizes never stop the matcher. The rebuild leaves them out of the book and the
next batch cancels them (reason ``invalid``), releasing what they still hold, even when
there is no other work; every other order rests and trades as before."""

from __future__ import annotations

import logging
from collections import defaultdict
from decimal import Decimal

import pytest

from marketdata.models import DepthLevel
from marketdata.services import marketdata_rebuild
from matching.engine import BUY, SELL, Cancel, OrderBook
from orders import catalog
from orders.matcher import MarketMatcher
from orders.models import Market, MatcherState, Order, Trade
from orders.pricing import market_spec
from orders.tests.conftest import recorded_commands
from orders.tests.test_matching import URL, assert_audit_ok, place, run_matcher, status_of
from wallets.models import AccountKind, JournalEntry, LedgerAccount
from wallets.tests.events import UserEvents

SYMBOL = "ETH-USDT"
NEW_TICK, NEW_LOT = Decimal("0.1"), Decimal("0.001")  # from 0.01 and 0.0001


def sizes_change(*, tick_size: Decimal = NEW_TICK, lot_size: Decimal = NEW_LOT) -> None:
    """As a change made straight in the database does: no model signal, so the catalog is
    told by hand."""
    Market.objects.filter(symbol=SYMBOL).update(tick_size=tick_size, lot_size=lot_size)
    catalog.markets.changed()


def balances() -> dict[tuple[int, int, str], Decimal]:
    return {
        (a.user_id, a.currency_id, a.kind): a.balance
        for a in LedgerAccount.objects.filter(user__isnull=False, kind__in=(AccountKind.AVAILABLE, AccountKind.LOCKED))
    }


def order(body: dict) -> Order:
    return Order.objects.get(pk=body["id"])


def every_seq_recorded() -> None:
    """Each sequence number the matcher used is one order's placement or its cancel."""
    seqs = [*Order.objects.exclude(seq=None).values_list("seq", flat=True)]
    seqs += Order.objects.exclude(cancel_seq=None).values_list("cancel_seq", flat=True)
    assert sorted(seqs) == list(range(1, MatcherState.objects.get(market__symbol=SYMBOL).last_seq + 1))


def in_decimals(state, spec) -> tuple:
    """A book's resting orders (id, side, price, remaining, filled) and held stops, in
    decimals: books on different sizes compare."""

    def resting(r):
        return (
            r.order_id,
            r.side,
            spec.ticks_to_price(r.price),
            spec.lots_to_qty(r.remaining),
            spec.lots_to_qty(r.filled),
        )

    return [resting(r) for r in state.bids], [resting(r) for r in state.asks], [s.order_id for s in state.stops]


def rebuilt_state():
    """The book a new matcher restores from the database."""
    matcher = MarketMatcher(symbol=SYMBOL)
    matcher.start()
    try:
        return matcher.book.state()
    finally:
        matcher.stop()


@pytest.fixture
def book(alice_client, bob_client):
    """Trades, then resting orders and stops of both sides, on tick 0.01 and lot 0.0001:
    the ``off`` ones are not on tick 0.1 or lot 0.001, the ``valid`` ones are."""
    off, valid = {}, {}
    # A buy partially filled, its remainder off the new lot.
    off["partial_buy"] = place(bob_client, side="buy", price="1995", quantity="1.0005")
    place(alice_client, side="sell", price="1995", quantity="0.5")
    run_matcher()
    # A sell partially filled, off the new tick; the last trade price (2001.55) is too.
    off["partial_sell"] = place(alice_client, side="sell", price="2001.55", quantity="2")
    place(bob_client, side="buy", price="2001.55", quantity="0.5")
    run_matcher()
    valid["ask"] = place(alice_client, side="sell", price="2010", quantity="1")
    off["ask_off_lot"] = place(alice_client, side="sell", price="2020", quantity="0.0105")
    valid["bid"] = place(bob_client, side="buy", price="1990", quantity="1")
    off["bid_off_tick"] = place(bob_client, side="buy", price="1990.03", quantity="0.5")
    off["stop_off_tick"] = place(
        bob_client, side="buy", type="stop-limit", stop_price="2050.05", price="2060", quantity="1"
    )
    valid["stop"] = place(alice_client, side="sell", type="stop-limit", stop_price="1950", price="1940", quantity="1")
    run_matcher()
    statuses = {name: status_of(body) for name, body in (*off.items(), *valid.items())}
    assert statuses == {
        "partial_buy": "partially_filled",
        "partial_sell": "partially_filled",
        "ask": "open",
        "ask_off_lot": "open",
        "bid": "open",
        "bid_off_tick": "open",
        "stop_off_tick": "untriggered",
        "stop": "untriggered",
    }
    return off, valid


def test_orders_off_the_new_sizes_are_cancelled_with_their_holds_released(
    book, alice, bob, bob_client, caplog, django_capture_on_commit_callbacks
):
    off, valid = book
    before = balances()
    held = {name: order(body) for name, body in off.items()}
    released: dict[tuple[int, int, str], Decimal] = defaultdict(Decimal)
    for o in held.values():
        assert o.hold_left > 0
        released[(o.user_id, o.hold_currency_id, AccountKind.AVAILABLE)] += o.hold_left
        released[(o.user_id, o.hold_currency_id, AccountKind.LOCKED)] -= o.hold_left
    old_spec = market_spec(Market.objects.get(symbol=SYMBOL))
    _, commands = recorded_commands(SYMBOL)  # on the sizes they were placed with
    sizes_change()

    events = UserEvents(alice, bob)
    matcher = MarketMatcher(symbol=SYMBOL)
    with caplog.at_level(logging.WARNING, logger="orders.matcher"):
        matcher.start()  # refused before: the book could not be restored
    try:
        [warning] = [r.getMessage() for r in caplog.records if "tick or lot" in r.getMessage()]
        assert all(str(o.pk) in warning for o in held.values())
        # Nothing but them to do: the queue is empty, and they are still settled.
        assert not Order.objects.filter(status="pending").exists()
        with django_capture_on_commit_callbacks(execute=True):
            assert matcher.run_once() == len(off)
        assert matcher.run_once() == 0

        for name, body in off.items():
            settled = order(body)
            assert (settled.status, settled.reject_reason, settled.hold_left) == ("cancelled", "invalid", 0), name
            assert settled.cancel_seq is not None, name
            assert JournalEntry.objects.filter(idempotency_key=f"release:{settled.pk}").exists(), name
        # The fills stay; only the remainders went.
        assert order(off["partial_buy"]).filled_quantity == Decimal("0.5")
        assert order(off["partial_sell"]).filled_quantity == Decimal("0.5")
        assert Trade.objects.count() == 2
        assert {name: status_of(body) for name, body in valid.items()} == {
            "ask": "open",
            "bid": "open",
            "stop": "untriggered",
        }

        # Exactly the holds left: from locked to available, nothing else moved.
        after = balances()
        for key in before.keys() | after.keys():
            assert after.get(key, 0) == before.get(key, 0) + released.get(key, 0), key
        for account in LedgerAccount.objects.filter(kind=AccountKind.LOCKED, user__isnull=False):
            live = Order.objects.filter(
                user_id=account.user_id,
                hold_currency_id=account.currency_id,
                status__in=("open", "partially_filled", "untriggered"),
            )
            assert account.balance == sum((o.hold_left for o in live), Decimal(0)), account
        assert_audit_ok()

        # Each owner heard of their orders.
        for user, names in ((alice, ("partial_sell", "ask_off_lot")), (bob, ("partial_buy", "bid_off_tick"))):
            [message] = events.take(user, kind="user.events")
            told = {o["id"]: (o["status"], o["reject_reason"]) for o in message["orders"]}
            assert {told[off[name]["id"]] for name in names} == {("cancelled", "invalid")}

        # The book holds the valid orders alone, as a new matcher restores it.
        assert [r.order_id for r in matcher.book.resting_orders(BUY)] == [valid["bid"]["id"]]
        assert [r.order_id for r in matcher.book.resting_orders(SELL)] == [valid["ask"]["id"]]
        assert [s.order_id for s in matcher.book.stop_orders()] == [valid["stop"]["id"]]
        state = matcher.book.state()
    finally:
        matcher.stop()
    assert rebuilt_state() == state
    every_seq_recorded()
    # A replay of every recorded command, on the sizes of the time, gives the same book.
    commands += [Cancel(o.cancel_seq, o.pk) for o in Order.objects.filter(pk__in=[o.pk for o in held.values()])]
    replay = OrderBook()
    for command in sorted(commands, key=lambda c: c.seq):
        replay.apply(command)
    new_spec = market_spec(Market.objects.get(symbol=SYMBOL))
    assert in_decimals(replay.state(), old_spec) == in_decimals(state, new_spec)
    # The stored depth is in the old ticks: rebuilt, it shows the book on the new ones.
    marketdata_rebuild(market=Market.objects.get(symbol=SYMBOL))
    depth = DepthLevel.objects.filter(market__symbol=SYMBOL).values_list("side", "ticks", "price", "quantity")
    assert sorted(depth) == [("buy", 19900, Decimal(1990), Decimal(1)), ("sell", 20100, Decimal(2010), Decimal(1))]

    # The valid orders still trade, on the new sizes.
    taker = place(bob_client, side="buy", price="2010", quantity="0.4")
    run_matcher()
    assert (status_of(taker), status_of(valid["ask"])) == ("filled", "partially_filled")
    trade = Trade.objects.get(trade_no=3)
    assert (trade.price, trade.quantity, trade.maker_order_id) == (Decimal(2010), Decimal("0.4"), valid["ask"]["id"])
    assert status_of(valid["stop"]) == "untriggered"
    every_seq_recorded()
    assert_audit_ok()


def test_a_cancel_requested_for_an_order_off_the_new_sizes_keeps_its_reason(book, alice_client, bob_client):
    off, valid = book
    for body in (off["bid_off_tick"], valid["bid"]):
        assert bob_client.delete(f"{URL}/{body['id']}").status_code == 202
    sizes_change()
    matcher = MarketMatcher(symbol=SYMBOL)
    matcher.start()
    try:
        assert matcher.run_once() == len(off) + 1  # the off-size cancel is one order
        assert matcher.run_once() == 0
    finally:
        matcher.stop()
    for name in ("partial_buy", "partial_sell", "ask_off_lot", "stop_off_tick"):
        assert (order(off[name]).status, order(off[name]).reject_reason) == ("cancelled", "invalid"), name
    for body in (off["bid_off_tick"], valid["bid"]):
        settled = order(body)
        assert (settled.status, settled.reject_reason, settled.hold_left) == ("cancelled", "user_cancel", 0)
    every_seq_recorded()
    assert_audit_ok()


def test_on_a_halted_market_they_wait_for_the_market_to_resume(book, eth_usdt):
    off, _ = book
    sizes_change(tick_size=Decimal("0.01"))  # the lot alone
    Market.objects.filter(pk=eth_usdt.pk).update(status=Market.Status.HALTED)
    matcher = MarketMatcher(symbol=SYMBOL)
    matcher.start()
    try:
        assert matcher.run_once() == 0
        assert {name: status_of(body) for name, body in off.items()} == {
            "partial_buy": "partially_filled",
            "partial_sell": "partially_filled",
            "ask_off_lot": "open",
            "bid_off_tick": "open",
            "stop_off_tick": "untriggered",
        }
        Market.objects.filter(pk=eth_usdt.pk).update(status=Market.Status.ACTIVE)
        assert matcher.run_once() == 2  # on tick 0.01, only the two off the new lot
    finally:
        matcher.stop()
    assert (status_of(off["partial_buy"]), status_of(off["ask_off_lot"])) == ("cancelled", "cancelled")
    assert status_of(off["partial_sell"]) == "partially_filled"
    assert_audit_ok()
