"""Reading and cancelling the caller's orders: every filter is checked (a bad, empty or
unknown one is a 400 with its own code and changes nothing), and a bad cursor is a 400."""

from __future__ import annotations

from base64 import b64encode

import pytest

from orders.models import Order
from orders.tests.test_matching import place
from wallets.models import Currency
from wallets.tests.factories import fund

URL = "/api/v1/orders"
TRADES = "/api/v1/trades"


def error(response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


@pytest.fixture
def two_orders(alice_client, alice) -> dict[str, dict]:
    """One live order of Alice's in ETH-USDT (a buy), one in BTC-USDT (a sell)."""
    fund(alice, Currency.objects.get(code="BTC"), "1")
    return {
        "ETH-USDT": place(alice_client, side="buy", price="2000", quantity="1"),
        "BTC-USDT": place(alice_client, market="BTC-USDT", side="sell", price="70000", quantity="0.1"),
    }


def cancel_requested() -> list[int]:
    return sorted(Order.objects.filter(cancel_requested=True).values_list("pk", flat=True))


# --- DELETE /orders?market= ------------------------------------------------------------------


@pytest.mark.parametrize("query", ["?market=", "?market=%20%20", "?market=%09"])
def test_cancel_all_with_an_empty_market_is_refused(alice_client, two_orders, unchanged, query):
    with unchanged():
        response = alice_client.delete(URL + query)
    assert error(response) == (400, "market_blank")
    assert cancel_requested() == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?market=NOPE-USDT", "unknown_market"),
        ("?symbol=ETH-USDT", "unknown_field"),
        ("?market=ETH-USDT&x=1", "unknown_field"),
    ],
)
def test_cancel_all_with_a_bad_query_is_refused(alice_client, two_orders, unchanged, query, code):
    with unchanged():
        response = alice_client.delete(URL + query)
    assert error(response) == (400, code)


def test_cancel_all_in_one_market_any_case(alice_client, two_orders):
    response = alice_client.delete(URL + "?market=eth-usdt")
    assert response.status_code == 202
    assert response.json() == {"cancel_requested": [two_orders["ETH-USDT"]["id"]]}
    assert cancel_requested() == [two_orders["ETH-USDT"]["id"]]


def test_cancel_all_without_a_market_cancels_every_market(alice_client, two_orders):
    response = alice_client.delete(URL)
    assert response.status_code == 202
    assert sorted(response.json()["cancel_requested"]) == sorted(o["id"] for o in two_orders.values())


# --- GET /orders and /trades filters ---------------------------------------------------------


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [o["id"] for o in response.json()["results"]]


def test_orders_filters(alice_client, two_orders):
    eth, btc = two_orders["ETH-USDT"]["id"], two_orders["BTC-USDT"]["id"]
    assert ids(alice_client.get(URL)) == [btc, eth]
    assert ids(alice_client.get(URL + "?market=eth-usdt")) == [eth]
    assert ids(alice_client.get(URL + "?market=%20BTC-USDT%20")) == [btc]
    assert ids(alice_client.get(URL + "?side=buy")) == [eth]
    assert ids(alice_client.get(URL + "?side=sell&market=ETH-USDT")) == []
    assert ids(alice_client.get(URL + "?status=open")) == [btc, eth]
    assert ids(alice_client.get(URL + "?status=pending")) == [btc, eth]
    assert ids(alice_client.get(URL + "?status=history")) == []
    assert ids(alice_client.get(URL + "?status=open&side=sell&limit=10")) == [btc]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?side=bogus", "side_invalid"),
        ("?side=BUY", "side_invalid"),
        ("?side=", "side_invalid"),
        ("?status=nonsense", "status_invalid"),
        ("?status=", "status_invalid"),
        ("?market=NOPE-USDT", "unknown_market"),
        ("?market=", "market_blank"),
        ("?market=" + "X" * 33, "market_max_length"),
        ("?created_after=not-a-date", "unknown_field"),
        ("?foo=1", "unknown_field"),
        ("?status=open&Side=buy", "unknown_field"),
    ],
)
def test_orders_bad_filters_are_refused(alice_client, two_orders, unchanged, query, code):
    with unchanged():
        response = alice_client.get(URL + query)
    assert error(response) == (400, code)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?market=NOPE-USDT", "unknown_market"),
        ("?market=", "market_blank"),
        ("?side=buy", "unknown_field"),
        ("?foo=1", "unknown_field"),
    ],
)
def test_trades_bad_filters_are_refused(alice_client, two_orders, unchanged, query, code):
    with unchanged():
        response = alice_client.get(TRADES + query)
    assert error(response) == (400, code)


def test_trades_market_filter(alice_client, two_orders):
    assert ids(alice_client.get(TRADES + "?market=eth-usdt&limit=5")) == []


# --- Cursors --------------------------------------------------------------------------------


def forged(querystring: str) -> str:
    return b64encode(querystring.encode()).decode()


BAD_CURSORS = [
    "garbage",
    "%C3%A9t%C3%A9",
    forged("o=x"),
    forged("r=x"),
    forged("p=abc"),
    forged("p=1.5"),
    forged(f"p={10**30}"),
    forged("r=1&p="),
]


@pytest.mark.parametrize("path", [URL, TRADES, "/api/v1/ledger", "/api/v1/deposits"])
@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_bad_cursor_is_a_400(alice_client, two_orders, unchanged, path, cursor):
    with unchanged():
        response = alice_client.get(f"{path}?cursor={cursor}")
    assert error(response) == (400, "cursor_invalid")
    assert response.json()["message"]


def test_the_cursors_of_the_links_are_followed(alice_client, two_orders):
    first = alice_client.get(URL + "?limit=1").json()
    assert [o["id"] for o in first["results"]] == [two_orders["BTC-USDT"]["id"]]
    second = alice_client.get(first["next"]).json()
    assert [o["id"] for o in second["results"]] == [two_orders["ETH-USDT"]["id"]]
    assert second["next"] is None
    back = alice_client.get(second["previous"]).json()
    assert [o["id"] for o in back["results"]] == [two_orders["BTC-USDT"]["id"]]
    assert alice_client.get(URL + "?cursor=").status_code == 200
