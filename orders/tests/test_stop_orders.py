"""Stop orders through the real matcher: triggered in the batch that moves the price,
triggering one another, restored in order after a restart, stop-market orders by quote
amount and by quantity, and cancelled while the market is halted or cancel-only.

Every case starts from a last price of 2000 (a small trade between two other users) on
ETH-USDT (tick 0.01, lot 0.0001, maker 0.1 %, taker 0.2 %). The traders are funded with
100000 USDT and 100 ETH each; expected balances and fees are worked out by hand below."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.roles import ADMIN
from accounts.tests.helpers import staff_member
from orders.controls import market_status_set
from orders.matcher import MarketMatcher
from orders.models import Market, Order, Trade
from orders.tests.conftest import balance, client_of, fees_balance, trader, world_state
from orders.tests.test_matching import URL, assert_audit_ok, place, run_matcher
from orders.tests.test_settlement_properties import assert_locked_equals_holds, replay_problems
from wallets.models import AccountKind, Currency, JournalEntry

HALTED, CANCEL_ONLY = Market.Status.HALTED, Market.Status.CANCEL_ONLY


@pytest.fixture
def last_2000(eth_usdt):
    """A first trade, 0.01 ETH at 2000, between two users the cases do not look at."""
    place(client_of(trader("first-seller@example.com")), side="sell", price="2000", quantity="0.01")
    place(client_of(trader("first-buyer@example.com")), side="buy", price="2000", quantity="0.01")
    run_matcher()
    assert list(Trade.objects.values_list("price", flat=True)) == [Decimal(2000)]


@pytest.fixture
def carol(markets):
    return trader("carol@example.com")


@pytest.fixture
def dave(markets):
    return trader("dave@example.com")


@pytest.fixture
def erin(markets):
    return trader("erin@example.com")


def order_of(body: dict) -> Order:
    return Order.objects.get(pk=body["id"])


def trades_since(trade_no: int) -> list[tuple]:
    """(price, quantity, maker order, taker order) of the trades after ``trade_no``, in order."""
    return list(
        Trade.objects.filter(trade_no__gt=trade_no)
        .order_by("trade_no")
        .values_list("price", "quantity", "maker_order_id", "taker_order_id")
    )


def holdings(user, currency: Currency) -> tuple[Decimal, Decimal]:
    return balance(user, currency), balance(user, currency, AccountKind.LOCKED)


def released(order: Order) -> Decimal:
    """What the order's release entry gave back to the available balance."""
    entry = JournalEntry.objects.get(idempotency_key=f"release:{order.pk}")
    return entry.legs.get(amount__gt=0).amount


def assert_consistent(eth_usdt, users) -> None:
    assert_locked_equals_holds(eth_usdt, users)
    assert_audit_ok()
    assert replay_problems(eth_usdt) == []


def test_a_stop_placed_in_the_batch_that_moves_the_price_fires_within_that_batch(
    last_2000, alice_client, bob_client, alice, bob, carol, dave, usdt, eth, eth_usdt
):
    fees_before = fees_balance(usdt)
    # All five are pending together and go through the book as one batch, in this order.
    stop = place(bob_client, side="buy", type="stop-limit", stop_price="2010", price="2020", quantity="1")
    ask_2010 = place(alice_client, side="sell", price="2010", quantity="0.5")
    ask_2015 = place(alice_client, side="sell", price="2015", quantity="1")
    lifter = place(client_of(carol), side="buy", price="2010", quantity="0.5")  # trades at 2010: the stop fires
    # Valid when placed (last price 2000), but the book's last price is 2015 by its turn.
    late = place(client_of(dave), side="buy", type="stop-limit", stop_price="2005", price="2030", quantity="1")
    assert order_of(stop).hold_amount == Decimal("2024.04")  # 2020 x 1 x 1.002
    assert order_of(late).hold_amount == Decimal("2034.06")  # 2030 x 1 x 1.002

    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        assert matcher.run_once() == 5  # one batch
        assert matcher.run_once() == 0
    finally:
        matcher.stop()

    assert trades_since(1) == [
        (Decimal(2010), Decimal("0.5"), ask_2010["id"], lifter["id"]),
        (Decimal(2015), Decimal(1), ask_2015["id"], stop["id"]),  # the stop took the next ask
    ]
    fired = order_of(stop)
    assert (fired.status, fired.filled_quantity, fired.filled_quote, fired.fee_paid, fired.hold_left) == (
        "filled",
        Decimal(1),
        Decimal(2015),
        Decimal("4.03"),  # 2015 x 0.002
        0,
    )
    assert fired.seq < order_of(lifter).seq < order_of(late).seq
    assert fired.book_priority is None  # it never rested
    assert released(fired) == Decimal("5.01")  # 2024.04 held - 2015 - 4.03
    rejected = order_of(late)
    assert (rejected.status, rejected.reject_reason, rejected.hold_left) == ("rejected", "stop_would_trigger", 0)
    assert released(rejected) == Decimal("2034.06")  # the whole hold

    assert holdings(bob, usdt) == (Decimal("97980.97"), 0)  # 100000 - 2015 - 4.03
    assert holdings(bob, eth) == (Decimal(101), 0)
    assert holdings(dave, usdt) == (Decimal(100000), 0)
    assert holdings(carol, usdt) == (Decimal("98992.99"), 0)  # 100000 - 1005 - 2.01
    assert holdings(carol, eth) == (Decimal("100.5"), 0)
    # Alice sold 0.5 at 2010 and 1 at 2015 as the maker: 1005 - 1.005 + 2015 - 2.015.
    assert holdings(alice, usdt) == (Decimal("103016.98"), 0)
    assert holdings(alice, eth) == (Decimal("98.5"), 0)
    assert fees_balance(usdt) - fees_before == Decimal("9.06")  # 1.005 + 2.01 + 2.015 + 4.03
    assert_consistent(eth_usdt, [alice, bob, carol, dave])


def test_the_fill_of_one_stop_fires_the_next(
    last_2000, alice_client, bob_client, alice, bob, carol, dave, usdt, eth, eth_usdt
):
    bids = [
        place(alice_client, side="buy", price=p, quantity=q) for p, q in (("1990", "0.2"), ("1985", "1"), ("1975", "1"))
    ]
    first = place(bob_client, side="sell", type="stop-market", stop_price="1990", quantity="1.5")
    second = place(client_of(carol), side="sell", type="stop-market", stop_price="1980", quantity="0.5")
    run_matcher()
    assert (order_of(first).status, order_of(second).status) == ("untriggered", "untriggered")
    assert (holdings(bob, eth), holdings(carol, eth)) == (
        (Decimal("98.5"), Decimal("1.5")),
        (Decimal("99.5"), Decimal("0.5")),
    )
    fees_before = fees_balance(usdt)

    # Dave's sale trades at 1990: Bob's stop fires and sells through 1985 down to 1975,
    # which fires Carol's stop (1975 <= 1980; 1990 alone would not have).
    hitter = place(client_of(dave), side="sell", price="1990", quantity="0.2")
    run_matcher()
    assert trades_since(1) == [
        (Decimal(1990), Decimal("0.2"), bids[0]["id"], hitter["id"]),
        (Decimal(1985), Decimal(1), bids[1]["id"], first["id"]),
        (Decimal(1975), Decimal("0.5"), bids[2]["id"], first["id"]),
        (Decimal(1975), Decimal("0.5"), bids[2]["id"], second["id"]),
    ]
    bob_stop, carol_stop = order_of(first), order_of(second)
    assert (bob_stop.status, bob_stop.filled_quantity, bob_stop.filled_quote, bob_stop.fee_paid) == (
        "filled",
        Decimal("1.5"),
        Decimal("2972.5"),  # 1985 + 0.5 x 1975
        Decimal("5.945"),  # 2972.5 x 0.002
    )
    assert (carol_stop.status, carol_stop.filled_quantity, carol_stop.fee_paid) == (
        "filled",
        Decimal("0.5"),
        Decimal("1.975"),  # 987.5 x 0.002
    )
    assert holdings(bob, usdt) == (Decimal("102966.555"), 0)  # 100000 + 2972.5 - 5.945
    assert holdings(bob, eth) == (Decimal("98.5"), 0)
    assert holdings(carol, usdt) == (Decimal("100985.525"), 0)  # 100000 + 987.5 - 1.975
    assert holdings(carol, eth) == (Decimal("99.5"), 0)
    assert holdings(dave, usdt) == (Decimal("100397.204"), 0)  # 100000 + 398 - 0.796
    # Alice bought 0.2 at 1990, 1 at 1985 and 1 at 1975 as the maker:
    # 398 + 1985 + 1975 = 4358, plus 0.1 % = 4.358.
    assert holdings(alice, usdt) == (Decimal("95637.642"), 0)
    assert holdings(alice, eth) == (Decimal("102.2"), 0)
    # Alice 4.358 + Bob 5.945 + Carol 1.975 + Dave 0.796.
    assert fees_balance(usdt) - fees_before == Decimal("13.074")
    assert_consistent(eth_usdt, [alice, bob, carol, dave])


def test_after_a_restart_untriggered_stops_are_restored_and_fire_in_the_order_placed(
    last_2000, alice_client, bob_client, alice, bob, carol, dave, erin, usdt, eth, eth_usdt
):
    """Bob's stop (2010), Carol's (2005), Dave's (2008), placed in that order: neither the
    stop-price order nor its reverse is the order placed, only the sequence order is."""
    stops = []
    for client, stop_price in ((bob_client, "2010"), (client_of(carol), "2005"), (client_of(dave), "2008")):
        stops.append(place(client, side="buy", type="stop-limit", stop_price=stop_price, price="2030", quantity="1"))
        run_matcher()  # each in its own batch, each by a new matcher
    asks = [
        place(alice_client, side="sell", price=p, quantity=q)
        for p, q in (("2010", "0.1"), ("2020", "1"), ("2025", "1"), ("2030", "1"))
    ]
    run_matcher()
    seqs = [order_of(s).seq for s in stops]
    assert seqs == sorted(seqs) and [order_of(s).status for s in stops] == ["untriggered"] * 3

    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        restored = matcher.book.stop_orders()
        assert [s.order_id for s in restored] == [s["id"] for s in stops]
        assert [s.stop_price for s in restored] == [201000, 200500, 200800]  # in ticks of 0.01
        assert matcher.book.last_price == 200000
        lifter = place(client_of(erin), side="buy", price="2010", quantity="0.1")  # trades at 2010: all three fire
        assert matcher.run_once() == 1
        assert matcher.book.stop_orders() == []
    finally:
        matcher.stop()

    assert trades_since(1) == [
        (Decimal(2010), Decimal("0.1"), asks[0]["id"], lifter["id"]),
        (Decimal(2020), Decimal(1), asks[1]["id"], stops[0]["id"]),
        (Decimal(2025), Decimal(1), asks[2]["id"], stops[1]["id"]),
        (Decimal(2030), Decimal(1), asks[3]["id"], stops[2]["id"]),
    ]
    # Each held 2030 x 1.002 = 2034.06 and paid its price plus 0.2 %.
    for user, paid, back in (
        (bob, Decimal("2024.04"), Decimal("10.02")),
        (carol, Decimal("2029.05"), Decimal("5.01")),
        (dave, Decimal("2034.06"), None),
    ):
        order = Order.objects.get(user=user, type="stop-limit")
        assert (order.status, order.hold_left) == ("filled", 0)
        assert holdings(user, usdt) == (Decimal(100000) - paid, 0)
        assert holdings(user, eth) == (Decimal(101), 0)
        if back is None:
            assert not JournalEntry.objects.filter(idempotency_key=f"release:{order.pk}").exists()
        else:
            assert released(order) == back
    assert_consistent(eth_usdt, [alice, bob, carol, dave, erin])


def test_stop_market_buy_by_quote_amount_and_sell_by_quantity_settle_exactly(
    last_2000, alice_client, bob_client, alice, bob, carol, erin, usdt, eth, eth_usdt
):
    book = {
        (side, price): place(alice_client, side=side, price=price, quantity=quantity)["id"]
        for side, price, quantity in (
            ("sell", "2010", "0.1"),
            ("sell", "2020", "0.3"),
            ("sell", "2030", "1"),
            ("buy", "1990", "0.1"),
            ("buy", "1985", "0.4"),
            ("buy", "1980", "1"),
        )
    }
    buy = place(bob_client, side="buy", type="stop-market", stop_price="2010", quote_amount="1000")
    # A protection price of 1982: it sells at 1985, never at 1980.
    sell = place(client_of(carol), side="sell", type="stop-market", stop_price="1990", quantity="0.6", price="1982")
    run_matcher()
    assert (order_of(buy).status, order_of(sell).status) == ("untriggered", "untriggered")
    assert holdings(bob, usdt) == (Decimal(99000), Decimal(1000))  # the quote amount, exactly
    assert holdings(carol, eth) == (Decimal("99.4"), Decimal("0.6"))
    fees_before = fees_balance(usdt)

    lift = place(client_of(erin), side="buy", price="2010", quantity="0.1")  # trades at 2010: the buy stop fires
    run_matcher()
    # Budget: 1000 / 1.002 = 998.003992 (floored to the quote unit 0.000001). 0.3 at 2020
    # costs 606; the 392.003992 left buys 1931 lots (0.1931) at 2030 = 391.993, not 1932
    # (392.196). Notional 997.993, fee floor(997.993 x 0.002) = 1.995986.
    bought = order_of(buy)
    assert (bought.status, bought.filled_quantity, bought.filled_quote, bought.fee_paid, bought.hold_left) == (
        "filled",
        Decimal("0.4931"),
        Decimal("997.993"),
        Decimal("1.995986"),
        0,
    )
    assert released(bought) == Decimal("0.011014")  # 1000 - 997.993 - 1.995986
    assert holdings(bob, usdt) == (Decimal("99000.011014"), 0)
    assert holdings(bob, eth) == (Decimal("100.4931"), 0)

    hit = place(client_of(erin), side="sell", price="1990", quantity="0.1")  # trades at 1990: the sell stop fires
    run_matcher()
    sold = order_of(sell)
    assert (sold.status, sold.reject_reason, sold.filled_quantity, sold.filled_quote, sold.fee_paid) == (
        "expired",
        "ioc_remainder",
        Decimal("0.4"),
        Decimal(794),  # 0.4 x 1985
        Decimal("1.588"),  # 794 x 0.002
    )
    assert (sold.hold_left, released(sold)) == (0, Decimal("0.2"))  # the remainder below the protection price
    assert holdings(carol, eth) == (Decimal("99.6"), 0)
    assert holdings(carol, usdt) == (Decimal("100792.412"), 0)  # 100000 + 794 - 1.588

    assert trades_since(1) == [
        (Decimal(2010), Decimal("0.1"), book[("sell", "2010")], lift["id"]),
        (Decimal(2020), Decimal("0.3"), book[("sell", "2020")], buy["id"]),
        (Decimal(2030), Decimal("0.1931"), book[("sell", "2030")], buy["id"]),
        (Decimal(1990), Decimal("0.1"), book[("buy", "1990")], hit["id"]),
        (Decimal(1985), Decimal("0.4"), book[("buy", "1985")], sell["id"]),
    ]
    # Maker Alice: (201 + 606 + 391.993 + 199 + 794) x 0.001, each order floored:
    # 0.201 + 0.606 + 0.391993 + 0.199 + 0.794 = 2.191993. Takers: Bob 1.995986,
    # Erin 0.402 + 0.398, Carol 1.588.
    assert fees_balance(usdt) - fees_before == Decimal("6.575979")
    assert_consistent(eth_usdt, [alice, bob, carol, erin])


def test_cancelling_untriggered_stops_while_halted_or_cancel_only_releases_every_hold(
    last_2000, bob_client, bob, usdt, eth, eth_usdt
):
    stop_limit = place(bob_client, side="buy", type="stop-limit", stop_price="2100", price="2110", quantity="1")
    stop_buy = place(bob_client, side="buy", type="stop-market", stop_price="2050", quote_amount="500")
    stop_sell = place(bob_client, side="sell", type="stop-market", stop_price="1900", quantity="0.7")
    run_matcher()
    stops = [stop_limit, stop_buy, stop_sell]
    assert [order_of(s).status for s in stops] == ["untriggered"] * 3
    # 2110 x 1.002 = 2114.22, plus the 500 quote amount; 0.7 ETH.
    assert holdings(bob, usdt) == (Decimal("97385.78"), Decimal("2614.22"))
    assert holdings(bob, eth) == (Decimal("99.3"), Decimal("0.7"))
    # One more, still pending (not yet in the book) when the market is halted.
    not_taken = place(bob_client, side="buy", type="stop-market", stop_price="2200", quote_amount="300")
    assert holdings(bob, usdt) == (Decimal("97085.78"), Decimal("2914.22"))

    admin = staff_member("admin-staff@example.com", ADMIN)
    market_status_set(market=eth_usdt, status=HALTED, actor=admin, reason="incident")
    for body in (stop_limit, stop_buy, not_taken):
        assert bob_client.delete(f"{URL}/{body['id']}").status_code == 202
    before = world_state()
    run_matcher()
    assert world_state() == before  # halted: the cancels wait, the holds stay
    assert [(order_of(s).status, order_of(s).cancel_requested) for s in [*stops, not_taken]] == [
        ("untriggered", True),
        ("untriggered", True),
        ("untriggered", False),
        ("pending", True),
    ]

    market_status_set(market=eth_usdt, status=CANCEL_ONLY, actor=admin, reason="unwind")
    assert bob_client.delete(f"{URL}/{stop_sell['id']}").status_code == 202
    run_matcher()
    for body, hold in zip(stops, (Decimal("2114.22"), Decimal(500), Decimal("0.7")), strict=True):
        order = order_of(body)
        assert (order.status, order.reject_reason, order.hold_left) == ("cancelled", "user_cancel", 0)
        assert order.cancel_seq is not None  # cancelled in the book
        assert order.hold_amount == released(order) == hold
    never_in_book = order_of(not_taken)
    assert (never_in_book.status, never_in_book.seq, never_in_book.cancel_seq) == ("cancelled", None, None)
    assert (never_in_book.hold_left, released(never_in_book)) == (0, Decimal(300))
    assert holdings(bob, usdt) == (Decimal(100000), 0)
    assert holdings(bob, eth) == (Decimal(100), 0)

    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        assert matcher.book.stop_orders() == []  # the rebuilt book holds none of them
    finally:
        matcher.stop()
    assert_consistent(eth_usdt, [bob])
