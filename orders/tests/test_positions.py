"""Positions through the API: average cost, realized and unrealized PnL, checked against
numbers worked out here from the trades' own prices, quantities and fee rates."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from rest_framework.test import APIClient

from orders.models import Order
from orders.tests.conftest import balance
from orders.tests.test_matching import place, run_matcher
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
    """The quote is a query parameter: a body is refused, never ignored."""
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
