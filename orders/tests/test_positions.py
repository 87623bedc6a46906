"""Positions through the API: average cost, realized and unrealized PnL, checked against
numbers worked out here from the trades' own prices, quantities and fee rates."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from rest_framework.test import APIClient

from orders.models import Order, Trade
from orders.tests.conftest import balance, client_of, trader
from orders.tests.test_matching import assert_audit_ok, place, run_matcher
from wallets.models import AccountKind, Currency
from wallets.tests.factories import UserFactory, fund

URL = "/api/v1/positions"
MAKER, TAKER = Fraction("0.001"), Fraction("0.002")


def money(value: Fraction, places: int = 6) -> str:
    """Exact text of ``value`` rounded half-even to ``places`` (the API's format)."""
    text = format(Decimal(round(value * 10**places)).scaleb(-places), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def trade_history(alice_client, bob_client):
    # 1. Alice's bid rests and Bob sells into it: Alice buys 1 ETH at 2000 as the maker.
    place(alice_client, side="buy", price="2000", quantity="1")
    run_matcher()
    place(bob_client, side="sell", price="2000", quantity="1")
    run_matcher()
    # 2. Bob's ask rests and Alice takes it: Alice buys 1 ETH at 2200 as the taker.
    place(bob_client, side="sell", price="2200", quantity="1")
    run_matcher()
    place(alice_client, side="buy", price="2200", quantity="1")
    run_matcher()
    # 3. Bob's bid rests and Alice hits it: Alice sells 0.5 ETH at 2300 as the taker.
    place(bob_client, side="buy", price="2300", quantity="0.5")
    run_matcher()
    place(alice_client, side="sell", price="2300", quantity="0.5")
    run_matcher()


def test_average_cost_and_pnl(alice_client, bob_client, alice, bob):
    trade_history(alice_client, bob_client)

    cost = (2000 * (1 + MAKER)) + (2200 * (1 + TAKER))  # both buys, fees included
    average = cost / 2
    proceeds = Fraction(2300) * Fraction("0.5") * (1 - TAKER)
    realized = proceeds - Fraction("0.5") * average
    unrealized = Fraction("1.5") * (2300 - average)

    response = alice_client.get(URL)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["quote"] == "USDT"
    assert [p["asset"] for p in body["positions"]] == ["ETH"]
    eth = body["positions"][0]
    assert eth == {
        "asset": "ETH",
        "quantity": "101.5",  # 100 funded + 1 + 1 - 0.5
        "available": "101.5",
        "costed_quantity": "1.5",
        "uncosted_quantity": "100",  # the funded coins: cost unknown
        "average_cost": money(average),
        "last_price": "2300",
        "market_value": money(Fraction("101.5") * 2300),
        "realized_pnl": money(realized),
        "unrealized_pnl": money(unrealized),
    }
    assert (eth["average_cost"], eth["realized_pnl"], eth["unrealized_pnl"]) == ("2103.2", "96.1", "295.2")


def test_sells_of_coins_of_unknown_cost_realize_nothing(alice_client, bob_client, alice, bob):
    trade_history(alice_client, bob_client)
    # Bob sold 2 of his funded ETH (no cost known), then bought 0.5 back as the maker.
    average = Fraction(2300) * (1 + MAKER)
    eth = bob_client.get(URL).json()["positions"][0]
    assert (eth["quantity"], eth["costed_quantity"], eth["uncosted_quantity"]) == ("98.5", "0.5", "98")
    assert eth["average_cost"] == money(average) == "2302.3"
    assert eth["realized_pnl"] == "0"
    assert eth["unrealized_pnl"] == money(Fraction("0.5") * (2300 - average)) == "-1.15"


def test_holdings_without_trades_have_no_cost(markets):
    user = UserFactory()
    fund(user, Currency.objects.get(code="BTC"), "0.5")
    client = APIClient()
    client.force_authenticate(user)
    btc = client.get(URL).json()["positions"][0]
    assert btc == {
        "asset": "BTC",
        "quantity": "0.5",
        "available": "0.5",
        "costed_quantity": "0",
        "uncosted_quantity": "0.5",
        "average_cost": None,
        "last_price": None,
        "market_value": None,
        "realized_pnl": "0",
        "unrealized_pnl": "0",
    }


def test_unknown_quote_currency(alice_client, unchanged):
    with unchanged():
        response = alice_client.get(URL + "?quote=NOPE")
    assert (response.status_code, response.json()["code"]) == (400, "unknown_currency")


# --- Close ----------------------------------------------------------------------------


def test_close_sells_the_free_balance_rounded_down_to_the_lot(alice_client, bob_client, alice, bob, eth):
    fund(alice, eth, "0.00005")  # less than a lot (0.0001)
    place(bob_client, side="buy", price="1500", quantity="60")
    run_matcher()
    place(alice_client, side="sell", price="2500", quantity="40")  # locked: not free
    response = alice_client.post(URL + "/eth/close")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["market"], body["side"], body["type"], body["quantity"], body["status"]) == (
        "ETH-USDT",
        "sell",
        "market",
        "60",
        "pending",
    )
    assert balance(alice, eth) == Decimal("0.00005")
    run_matcher()
    order = Order.objects.get(pk=body["id"])
    assert (order.status, order.filled_quantity) == ("filled", Decimal(60))
    assert balance(alice, eth, AccountKind.LOCKED) == Decimal(40)


def test_close_with_less_than_a_lot_free(alice_client, alice, eth, unchanged):
    fund(alice, eth, "0.00005")
    place(alice_client, side="sell", price="2500", quantity="100")
    with unchanged():
        response = alice_client.post(URL + "/ETH/close?quote=USDT")
    assert (response.status_code, response.json()["code"]) == (400, "nothing_to_close")


def test_close_below_the_minimum_notional(alice_client, bob_client, alice, bob, eth, unchanged):
    place(bob_client, side="sell", price="2000", quantity="1")
    run_matcher()
    place(alice_client, side="buy", price="2000", quantity="1")
    run_matcher()  # last price 2000
    fund(alice, eth, "0.004")
    place(alice_client, side="sell", price="2500", quantity="101")
    with unchanged():  # 0.004 ETH x 2000 = 8 USDT < 10
        response = alice_client.post(URL + "/ETH/close")
    assert (response.status_code, response.json()["code"]) == (400, "nothing_to_close")


def test_close_below_the_minimum_notional_before_the_first_trade(alice_client, bob_client, alice, eth, unchanged):
    place(bob_client, side="buy", price="2000", quantity="1")  # no trade yet: valued at the best bid
    run_matcher()
    fund(alice, eth, "0.004")
    place(alice_client, side="sell", price="2500", quantity="100")
    with unchanged():  # 0.004 ETH x 2000 = 8 USDT < 10
        response = alice_client.post(URL + "/ETH/close")
    assert (response.status_code, response.json()["code"]) == (400, "nothing_to_close")


def test_close_refuses_a_body(alice_client, alice, eth, unchanged):
    """The quote is a query parameter: a body field other than ``min_price`` is refused,
    never ignored."""
    fund(alice, eth, "1")
    with unchanged():
        response = alice_client.post(URL + "/ETH/close", {"quote": "BTC"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "unknown_field")


def test_close_bad_input(alice_client, unchanged):
    with unchanged():
        unknown_asset = alice_client.post(URL + "/NOPE/close")
        unknown_quote = alice_client.post(URL + "/ETH/close?quote=NOPE")
        no_market = alice_client.post(URL + "/ETH/close?quote=BTC")
    assert (unknown_asset.status_code, unknown_asset.json()["code"]) == (400, "unknown_currency")
    assert (unknown_quote.status_code, unknown_quote.json()["code"]) == (400, "unknown_currency")
    assert (no_market.status_code, no_market.json()["code"]) == (400, "unknown_market")


# --- Close with a price floor ---------------------------------------------------------


def bids(client) -> None:
    """Bids resting in ETH-USDT: 1 at 2030, 0.6 at 2020, 2 at 2010 (4000 USDT in all)."""
    for price, quantity in (("2030", "1"), ("2020", "0.6"), ("2010", "2")):
        place(client, side="buy", price=price, quantity=quantity)
    run_matcher()


def fills(order_id: int) -> list[tuple[Decimal, Decimal, Decimal, Decimal]]:
    """(price, quantity, taker fee, maker fee) of the order's trades as the taker, in order."""
    return list(
        Trade.objects.filter(taker_order_id=order_id)
        .order_by("trade_no")
        .values_list("price", "quantity", "taker_fee", "maker_fee")
    )


def test_close_with_a_floor_above_every_bid_sells_nothing_and_releases_the_hold(
    alice_client, bob_client, alice, bob, usdt, eth
):
    bids(bob_client)
    response = alice_client.post(URL + "/ETH/close", {"min_price": "2030.01"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["type"], body["time_in_force"], body["side"], body["price"], body["quantity"], body["status"]) == (
        "limit",
        "ioc",
        "sell",
        "2030.01",
        "100",
        "pending",
    )
    assert (balance(alice, eth), balance(alice, eth, AccountKind.LOCKED)) == (Decimal(0), Decimal(100))
    run_matcher()

    close = Order.objects.get(pk=body["id"])
    assert (close.status, close.reject_reason, close.hold_left) == ("expired", "ioc_remainder", 0)
    assert (close.filled_quantity, close.filled_quote, close.fee_paid) == (0, 0, 0)
    assert fills(close.pk) == []
    assert (balance(alice, eth), balance(alice, eth, AccountKind.LOCKED)) == (Decimal(100), Decimal(0))
    assert (balance(alice, usdt), balance(alice, usdt, AccountKind.LOCKED)) == (Decimal(100000), Decimal(0))
    assert sorted(Order.objects.filter(user=bob).values_list("price", "status")) == [
        (Decimal(2010), "open"),
        (Decimal(2020), "open"),
        (Decimal(2030), "open"),
    ]
    assert_audit_ok()


def test_close_with_a_floor_sells_only_down_to_it(alice_client, bob_client, alice, bob, usdt, eth):
    bids(bob_client)
    response = alice_client.post(URL + "/ETH/close", {"min_price": "2020"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["type"], body["time_in_force"], body["price"], body["quantity"]) == ("limit", "ioc", "2020", "100")
    run_matcher()

    # The bids at and above the floor: 1 at 2030 and 0.6 at 2020, 1.6 ETH for 3242 USDT,
    # taker fee 4.06 + 2.424 = 6.484. The bid at 2010 is below the floor and stays; the
    # other 98.4 ETH expire unsold and their hold is released.
    close = Order.objects.get(pk=body["id"])
    assert (close.status, close.reject_reason, close.hold_left) == ("expired", "ioc_remainder", 0)
    assert (close.filled_quantity, close.filled_quote, close.fee_paid) == (
        Decimal("1.6"),
        Decimal(3242),
        Decimal("6.484"),
    )
    assert fills(close.pk) == [
        (Decimal(2030), Decimal(1), Decimal("4.06"), Decimal("2.03")),
        (Decimal(2020), Decimal("0.6"), Decimal("2.424"), Decimal("1.212")),
    ]
    assert (balance(alice, eth), balance(alice, eth, AccountKind.LOCKED)) == (Decimal("98.4"), Decimal(0))
    assert (balance(alice, usdt), balance(alice, usdt, AccountKind.LOCKED)) == (Decimal("103235.516"), Decimal(0))
    assert Order.objects.get(user=bob, price=2010).status == "open"
    assert_audit_ok()


def test_close_with_a_floor_below_the_bids_fills_as_a_market_close(alice_client, bob_client, alice, bob, usdt, eth):
    bids(bob_client)
    floored = alice_client.post(URL + "/ETH/close", {"min_price": "1000"}, format="json")
    assert floored.status_code == 201, floored.json()
    run_matcher()
    # The same book again, closed by a second holder of 100 ETH with a market order.
    bids(bob_client)
    carol = trader("carol@example.com")
    market = client_of(carol).post(URL + "/ETH/close")
    assert market.status_code == 201, market.json()
    assert (market.json()["type"], market.json()["price"]) == ("market", None)
    run_matcher()

    # Each sells into every bid at the bid's own price (above the floor: price
    # improvement), as the taker: 2030 + 1212 + 4020 = 7262 USDT for 3.6 ETH, taker fee
    # 0.2 % = 14.524 (the makers pay 0.1 %).
    expected_fills = [
        (Decimal(2030), Decimal(1), Decimal("4.06"), Decimal("2.03")),
        (Decimal(2020), Decimal("0.6"), Decimal("2.424"), Decimal("1.212")),
        (Decimal(2010), Decimal(2), Decimal("8.04"), Decimal("4.02")),
    ]
    for user, body in ((alice, floored.json()), (carol, market.json())):
        close = Order.objects.get(pk=body["id"])
        assert (close.status, close.reject_reason, close.hold_left) == ("expired", "ioc_remainder", 0)
        assert (close.filled_quantity, close.filled_quote, close.fee_paid) == (
            Decimal("3.6"),
            Decimal(7262),
            Decimal("14.524"),
        )
        assert fills(close.pk) == expected_fills
        assert (balance(user, eth), balance(user, eth, AccountKind.LOCKED)) == (Decimal("96.4"), Decimal(0))
        assert (balance(user, usdt), balance(user, usdt, AccountKind.LOCKED)) == (Decimal("107247.476"), Decimal(0))
    assert_audit_ok()


@pytest.mark.parametrize(
    ("min_price", "code"),
    [
        ("2000.001", "min_price_not_on_tick"),  # the tick is 0.01
        ("0.0000000000000000001", "min_price_max_decimal_places"),  # beyond 18 places
        ("0", "min_price_not_positive"),
        ("-5", "min_price_not_positive"),
        ("abc", "min_price_invalid"),
        ("", "min_price_invalid"),  # blank is no price, never "no floor"
        (" ", "min_price_invalid"),
        ("\u0661\u0662", "min_price_invalid"),  # Arabic-Indic 12
        ("1_000", "min_price_invalid"),
        ("1" * 30, "min_price_max_whole_digits"),
    ],
)
def test_close_with_a_bad_floor(alice_client, bob_client, alice, eth, unchanged, min_price, code):
    bids(bob_client)
    with unchanged():
        response = alice_client.post(URL + "/ETH/close", {"min_price": min_price}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, code), response.json()


def test_close_with_a_floor_checks_the_minimum_notional_at_the_floor(
    alice_client, bob_client, alice, bob, eth, unchanged
):
    place(bob_client, side="sell", price="2000", quantity="1")
    run_matcher()
    place(alice_client, side="buy", price="2000", quantity="1")
    run_matcher()  # last price 2000
    fund(alice, eth, "0.004")
    place(alice_client, side="sell", price="5000", quantity="101")  # 0.004 ETH free
    place(bob_client, side="buy", price="3000", quantity="1")
    run_matcher()
    # At the last price 0.004 ETH is worth 8 USDT, below the minimum of 10: no market close.
    with unchanged():
        response = alice_client.post(URL + "/ETH/close")
    assert (response.status_code, response.json()["code"]) == (400, "nothing_to_close")
    # At a floor of 2400 it is worth 9.6: refused too.
    with unchanged():
        response = alice_client.post(URL + "/ETH/close", {"min_price": "2400"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "nothing_to_close")
    # At a floor of 2500, 10: the order placement accepts it, and so does the close.
    response = alice_client.post(URL + "/ETH/close", {"min_price": "2500"}, format="json")
    assert response.status_code == 201, response.json()
    run_matcher()
    close = Order.objects.get(pk=response.json()["id"])
    assert (close.status, close.filled_quantity, close.filled_quote) == ("filled", Decimal("0.004"), Decimal(12))
    assert balance(alice, eth) == 0


def test_close_with_nothing_free_and_a_floor(alice_client, alice, eth, unchanged):
    place(alice_client, side="sell", price="2500", quantity="100")
    with unchanged():
        response = alice_client.post(URL + "/ETH/close", {"min_price": "2000"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "nothing_to_close")


@pytest.mark.parametrize("body", [None, {}, {"min_price": None}])
def test_close_without_a_floor_is_a_market_order(alice_client, bob_client, alice, eth, body):
    bids(bob_client)
    response = alice_client.post(URL + "/ETH/close", body, format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["type"], response.json()["time_in_force"], response.json()["price"]) == (
        "market",
        "ioc",
        None,
    )
    run_matcher()
    close = Order.objects.get(pk=response.json()["id"])
    assert (close.status, close.filled_quantity, close.filled_quote) == ("expired", Decimal("3.6"), Decimal(7262))
