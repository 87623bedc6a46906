"""Bad input of every kind thrown at the order, swap, position and market-data endpoints.

Seeded generators mutate valid requests (wrong JSON types, numbers in every spelling,
missing and unknown fields, bodies that are not objects or not JSON, other content types,
odd ids, query parameters repeated or absurd, cursors that were never written) and every
answer is held to the project's rule: never a 500; a refusal is a 4xx whose body carries
a ``code`` and a ``message``, and it changes nothing (ledger, orders, trades, swaps).
What is accepted must have been worth accepting: a price or an amount in digits other
than ASCII ones is never placed. Then the defects the generators found, one test each.
"""

from __future__ import annotations

import base64
import json
import random
import time
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, override_settings
from rest_framework.test import APIClient

from accounts.api_keys import encrypt_secret
from accounts.models import ApiKey
from kootabase.api.parsers import MAX_DEPTH, nests_deeper_than
from kootabase.api.throttling import RateLimitThrottle
from orders.models import Order, SwapExecution, SwapQuote
from orders.tests.conftest import world_state
from orders.tests.test_matching import place
from orders.tests.test_swap import run_matchers
from wallets.models import Currency
from wallets.tests.factories import fund

SEED = 20240611
CASES = 300

ORDERS = "/api/v1/orders"


class Raw(str):
    """JSON text sent as it is: what ``json.dumps`` cannot write (``1e400``, ``NaN``)."""


def encode(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(encode(v) for v in value) + "]"
    return json.dumps(value)


# --- Values ------------------------------------------------------------------------------

# Numbers as JSON strings: plain, exponents, signs, zeros of every scale, too many digits,
# words, other scripts' digits, whitespace and control characters.
_ASCII = ["1e3", "1E3", "1E+2", "1e-30", "-0", "0", "0.0", "0E-30", "0e-18", "-1", "+5", "--1", ".5", "5."]
_ASCII += ["0.0001", "2000", "0.1", "1", "2001.5", "0x10", "1_000"]
_WORDS = ["NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "∞", "²", "½"]
_LONG = ["1" * 40, "1." + "1" * 40, "9" * 18, "9" * 19, "99999999999999999.999999999999999999"]
_SCRIPTS = ["١٢", "١٢\u0660\u0660", "1\u06605", "٣.\u0665", "\uff11\uff12", "\U0001d7d9"]
_SPACED = [" 12 ", "\t12\n", "\u00a012", "12\x00", "", " "]
NUMBER_TEXTS = _ASCII + _WORDS + _LONG + _SCRIPTS + _SPACED
# Any JSON: scalars of every type and size, what only raw JSON text can say, containers.
_SCALARS = [None, True, False, 0, 1, -1, 2**31, 2**63, -(2**63) - 1, 10**40, 1.5, -0.0, 1e-300]
_RAW = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1E3", "-0", "1" * 400, '"\\ud800"', '"\\u0000"']
_CONTAINERS = [[], {}, ["1"], [None], {"a": 1}, {"": ""}, [[[]]]]
JSON_VALUES = _SCALARS + [Raw(text) for text in _RAW] + _CONTAINERS
TEXTS = ["", " ", "\x00", "x" * 10_000, "ü", "ß", "İ", "\u200b", "null", "true", "[]", "{}", "'", '"', "\\", "%00"]
TEXTS += ["<script>", "../../etc/passwd", "' OR 1=1 --"]
SURROGATES = "\ud83d\ude00"  # a pair, each half alone: JSON can carry them, UTF-8 cannot
UNKNOWN_KEYS = ["", " ", "Market", "market ", "quantitiy", "__proto__", "ü", "\x00", "x" * 300, "id", "user", "status"]
UNKNOWN_KEYS += ["\ud800"]


def any_value(rng: random.Random, own: list[Any] = ()) -> Any:
    """A field's value: mostly one of its own kind, else anything at all."""
    roll = rng.random()
    if own and roll < 0.45:
        return rng.choice(own)
    if roll < 0.65:
        return rng.choice(NUMBER_TEXTS)
    if roll < 0.9:
        return rng.choice(JSON_VALUES)
    return rng.choice([*TEXTS, SURROGATES])


def mutated(rng: random.Random, base: dict[str, Any], own: dict[str, list[Any]]) -> Any:
    """``base`` with one to three fields changed, removed or added; now and then a body
    that is not an object at all."""
    if rng.random() < 0.07:
        return rng.choice([*JSON_VALUES, *TEXTS, SURROGATES, [base], [base, base]])
    body = dict(base)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.7:
            name = rng.choice(list(own))
            body[name] = any_value(rng, own[name])
        elif roll < 0.85 and body:
            body.pop(rng.choice(list(body)))
        else:
            body[rng.choice(UNKNOWN_KEYS)] = any_value(rng)
    return body


CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
CONTENT_TYPES += ["application/xml", "application/json; charset=utf-16", "application/json; charset=latin-1"]
CONTENT_TYPES += ["application/json; charset=nope", "application/json; charset=unicode_escape", "application/JSON"]
CONTENT_TYPES += ["application/json;;", "*/*"]
# Codecs that are no text encodings. Django's WSGI request decodes its query string with
# the body's charset as it is built, and fails there, before any of the project's code:
# with a query string they are sent through ASGI, as the project is served (a test below).
BYTES_CODECS = ["application/json; charset=rot13", "application/json; charset=bz2_codec"]
_NOT_JSON = [
    b"",
    b"{",
    b"}",
    b"not json",
    b"\xff\xfe\x00",
    b"\xef\xbb\xbf{}",
    b'{"a": 1}{"b": 2}',
    b"[1,]",
    b"{'a': 1}",
]
_NOT_OBJECTS = [
    b"\x00",
    b"null",
    b'"an order"',
    b"[]",
    b"0",
    b"1e400",
    b"NaN",
    b"-Infinity",
    b'{"market": "ETH-USDT",}',
]
# Deep enough to be refused, not so deep that a decoder would crash the process if the
# bound were gone (that case has a test of its own, after a shallower one).
_DEEP = [b"[" * 65 + b"]" * 65, b"[" * 5000, b'{"a":' * 5000]
_ODD = [b'{"a": "\\ud800"}', b'{"a": "\\x"}', b'{"' + b"k" * 100_000 + b'": 1}', b'{"a": ' + b"9" * 5000 + b"}"]
RAW_BODIES = _NOT_JSON + _NOT_OBJECTS + _DEEP + _ODD


def send_body(rng: random.Random, body: Any, with_query: bool = False) -> tuple[bytes, str]:
    """The bytes and the content type of a request: usually ``body`` as JSON; now and then
    another content type or bytes that are no JSON at all."""
    roll = rng.random()
    if roll < 0.06:
        return rng.choice(RAW_BODIES), "application/json"
    if roll < 0.12:
        return encode(body).encode(), rng.choice(CONTENT_TYPES if with_query else CONTENT_TYPES + BYTES_CODECS)
    return encode(body).encode(), "application/json"


QUERY_JUNK = ["%", "%zz", "%ff", "%00", "&&", "=", "==x", ";", "a[]=1", "%E0%A4%A", "limit", "cursor", "+", "%20"]


def query_string(rng: random.Random, own: dict[str, list[str]]) -> str:
    """Zero to four parameters of the endpoint's own (repeated now and then) or unknown,
    their values of the endpoint's kind or absurd; now and then broken percent-encoding."""
    pairs: list[tuple[str, str]] = []
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(list(own)) if own and rng.random() < 0.93 else rng.choice(["x", "", "page", "Limit", "ü"])
        values = own.get(name, [])
        value = rng.choice(values) if values and rng.random() < 0.6 else rng.choice(NUMBER_TEXTS + TEXTS)
        pairs.append((name, value))
        if rng.random() < 0.1:
            pairs.append((name, rng.choice(values or TEXTS)))
    text = urlencode(pairs, quote_via=quote)
    if rng.random() < 0.1:
        text += "&" + rng.choice(QUERY_JUNK)
    return "?" + text if text else ""


# --- Checking ----------------------------------------------------------------------------


def state() -> tuple:
    """What a refused request leaves as it was: ledger, orders, trades, swaps."""
    return (
        world_state(),
        list(SwapQuote.objects.order_by("pk").values_list("pk", "status")),
        list(SwapExecution.objects.order_by("pk").values_list("pk", "status")),
    )


def body_of(response: Any) -> Any:
    return json.loads(response.content) if response.content else None


def check(client: APIClient, method: str, path: str, case: Any, data: bytes = b"", content_type: str = "") -> Any:
    """The answer to one request, held to the rule; returns it for more checks."""
    before = state()
    response = client.generic(method, path, data, content_type or "application/json")
    assert response.status_code < 500, (method, path, case, response.content[:500])
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json"), (path, case)
        body = body_of(response)
        assert isinstance(body, dict), (path, case, body)
        assert isinstance(body.get("code"), str) and body["code"], (path, case, body)
        assert isinstance(body.get("message"), str) and body["message"], (path, case, body)
        assert state() == before, (method, path, case, response.status_code, body)
    return response


MONEY = ("price", "stop_price", "quantity", "quote_amount")


def assert_worth_placing(order: Any) -> None:
    """An accepted order's prices and amounts were written in ASCII digits."""
    for name in MONEY:
        value = order.get(name) if isinstance(order, dict) else None
        if isinstance(value, str) and not isinstance(value, Raw):
            assert value.isascii() and "_" not in value, (name, value)


@pytest.fixture(autouse=True)
def _unthrottled(monkeypatch) -> None:
    """Hundreds of requests a minute from one client: the rate limits are not under test."""
    monkeypatch.setattr(RateLimitThrottle, "allow_request", lambda self, request, view: True)


@pytest.fixture
def scene(markets, alice, bob, alice_client, bob_client) -> dict[str, Any]:
    """A book to trade against and to quote swaps at, a fill of Alice's, her live and
    final orders, Bob's order (never Alice's to see) and an open swap quote of hers."""
    fund(alice, Currency.objects.get(code="BTC"), "1")
    place(bob_client, market="BTC-USDT", side="buy", price="60000", quantity="0.5")
    place(bob_client, side="sell", price="2000", quantity="5")
    bobs = place(bob_client, side="buy", price="1900", quantity="5")
    run_matchers()
    place(alice_client, side="buy", price="2000", quantity="0.5")  # fills against Bob's offer
    live = place(alice_client, side="buy", price="1500", quantity="0.2")
    cancelled = place(alice_client, side="sell", price="2500", quantity="0.1")
    assert alice_client.delete(f"{ORDERS}/{cancelled['id']}").status_code == 202
    run_matchers()
    quote_ = alice_client.post("/api/v1/swap/quote", {"from_currency": "ETH", "to_currency": "USDT", "amount": "0.1"})
    assert quote_.status_code == 201, quote_.json()
    first = alice_client.get(ORDERS + "?limit=1").json()
    second = alice_client.get(first["next"]).json()
    cursors = [link.split("cursor=")[1] for link in (first["next"], second["next"], second["previous"]) if link]
    return {
        "own": [live["id"], cancelled["id"]],
        "bobs": bobs["id"],
        "quote": quote_.json()["id"],
        "cursors": cursors,
    }


# --- The generators, one per endpoint ----------------------------------------------------

ORDER_BASES = [
    {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "1000", "quantity": "0.01"},
    {"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "3000", "quantity": "0.01"},
    {"market": "ETH-USDT", "side": "buy", "type": "market", "quote_amount": "25"},
    {"market": "ETH-USDT", "side": "sell", "type": "market", "quantity": "0.01"},
    {"market": "ETH-USDT", "side": "buy", "type": "market", "price": "2100", "quantity": "0.01"},
    {"market": "ETH-USDT", "side": "sell", "type": "stop-limit", "price": "17", "stop_price": "18", "quantity": "1"},
    {"market": "BTC-USDT", "side": "sell", "type": "limit", "price": "70000", "quantity": "0.001", "post_only": True},
]
MARKETS = ["ETH-USDT", "eth-usdt", " ETH-USDT ", "ETH_USDT", "ETHUSDT", "USDT-ETH", "BTC-USDT", "-", "ETH-USDT\x00"]
MARKETS += ["ÉTH-USDT", "ETH-USDT\u200b", "X" * 33, "ETH-USDT" * 4]
ORDER_FIELDS: dict[str, list[Any]] = {
    "market": MARKETS,
    "side": ["buy", "sell", "BUY", "Buy", "b", "buy ", "sell\x00", "short", "\udc00"],
    "type": ["limit", "market", "stop-limit", "stop-market", "LIMIT", "stop_limit", "iceberg", "limit\n"],
    "time_in_force": ["gtc", "ioc", "fok", "GTC", "day", "gtd"],
    "post_only": [True, False, "true", "false", 1, 0, "1", "yes", "on"],
    "price": NUMBER_TEXTS,
    "stop_price": NUMBER_TEXTS,
    "quantity": NUMBER_TEXTS,
    "quote_amount": NUMBER_TEXTS,
    "client_order_id": ["a", "bot-1", "x" * 64, "x" * 65, "has space", "ü", "a\n", "a/b", "a" * 10_000, "1"],
}


NUMBERS = [*NUMBER_TEXTS, 2000, 0.01, 10**40, -1, 1.5, Raw("1E3"), Raw("1e400"), Raw("-0"), Raw("1" * 400), True, None]


def test_placing_an_order(scene, alice_client):
    rng = random.Random(SEED)
    for case in range(CASES):
        base = rng.choice(ORDER_BASES)
        if case % 2:  # the right shape, a number in some spelling: what only the placement checks
            body = {**base, rng.choice([name for name in MONEY if name in base]): rng.choice(NUMBERS)}
        else:
            body = mutated(rng, base, ORDER_FIELDS)
        data, content_type = send_body(rng, body)
        response = check(alice_client, "POST", ORDERS, body, data, content_type)
        if response.status_code < 400:
            assert_worth_placing(body)
            assert body_of(response)["id"]


def test_placing_a_batch(scene, alice_client):
    rng = random.Random(SEED + 1)
    for _ in range(CASES // 2):
        items = [mutated(rng, rng.choice(ORDER_BASES), ORDER_FIELDS) for _ in range(rng.choice([0, 1, 2, 3, 5, 8]))]
        items += [rng.choice(ORDER_BASES)] * rng.choice([0, 0, 0, 1, 48])  # around the 50-order bound
        body = {"orders": items} if rng.random() < 0.85 else mutated(rng, {"orders": items}, {"orders": [items]})
        data, content_type = send_body(rng, body)
        orders_before = Order.objects.count()
        response = check(alice_client, "POST", ORDERS + "/batch", body, data, content_type)
        if response.status_code >= 400:
            continue
        results, sent = body_of(response)["results"], body["orders"]
        for item, result in zip(sent, results, strict=True):
            if result["status"] >= 400:
                assert result["order"] is None and result["error"]["code"] and result["error"]["message"], result
            else:
                assert result["status"] in (200, 201) and result["error"] is None, result
                assert_worth_placing(item)
        assert Order.objects.count() - orders_before == sum(r["status"] == 201 for r in results)


ODD_IDS = ["0", "00", "2147483648", str(2**63 - 1), str(2**63), "9" * 40, "-1", "1.0", "1e3", "+1", "0x1", "null", ""]
ODD_IDS += ["١٢", "\uff11", "%00", "abc", "1%20", "%201", "1/", "1/x", "%F0%9F%98%80", "1;2", "1,2"]


def ids(rng: random.Random, scene: dict[str, Any]) -> str:
    return str(rng.choice([*scene["own"], scene["bobs"]])) if rng.random() < 0.3 else rng.choice(ODD_IDS)


def test_reading_and_cancelling_an_order_by_id(scene, alice_client):
    rng = random.Random(SEED + 2)
    for _ in range(CASES):
        path = f"{ORDERS}/{ids(rng, scene)}"
        method = rng.choice(["GET", "DELETE"])
        check(alice_client, method, path, path, *send_body(rng, any_value(rng)) if rng.random() < 0.2 else ())
    assert Order.objects.get(pk=scene["bobs"]).cancel_requested is False


def cursor_values(rng: random.Random, scene: dict[str, Any]) -> list[str]:
    """Real cursors, real ones changed, and cursors this API never wrote."""
    real = rng.choice(scene["cursors"])
    values = ["1", "-1", "0", "9" * 40, "x", "", "1.5", "\u0661", "%00"]
    made = "&".join(f"{k}={rng.choice(values)}" for k in rng.sample(["o", "r", "p", "x"], rng.randint(1, 3)))
    written = [base64.b64encode(made.encode()).decode(), base64.urlsafe_b64encode(made.encode()).decode().rstrip("=")]
    return [real, real[:-1], real + "A", real[::-1], *written, "garbage", "%%%", "", "x" * 5000]


LIST_FIELDS = {
    "market": ["ETH-USDT", "eth-usdt", "", " ", "NOPE", "ETH-USDT\x00", "X" * 33],
    "status": ["open", "history", "filled", "cancelled", "OPEN", "", "all", "pending"],
    "side": ["buy", "sell", "", "BUY", "both"],
    "limit": ["1", "2", "500", "501", "0", "-1", "", "1e3", "١٢", "10" * 20, " 5", "5 ", "0005", "2.0"],
    "cursor": [],
}


def test_listing_orders_and_trades(scene, alice_client):
    rng = random.Random(SEED + 3)
    for _ in range(CASES):
        path = rng.choice([ORDERS, "/api/v1/trades"])
        own = dict(LIST_FIELDS, cursor=cursor_values(rng, scene))
        if path != ORDERS:
            own = {k: v for k, v in own.items() if k not in ("status", "side")}
        url = path + query_string(rng, own)
        response = check(alice_client, "GET", url, url)
        if response.status_code == 200:
            assert isinstance(body_of(response)["results"], list)


def test_cancelling_every_order(scene, alice_client):
    rng = random.Random(SEED + 4)
    for _ in range(CASES // 2):
        url = ORDERS + query_string(rng, {"market": LIST_FIELDS["market"]})
        check(alice_client, "DELETE", url, url, *send_body(rng, any_value(rng), True) if rng.random() < 0.2 else ())
    assert Order.objects.get(pk=scene["bobs"]).cancel_requested is False


SWAP_QUOTE_FIELDS: dict[str, list[Any]] = {
    "from_currency": ["ETH", "eth", " ETH ", "BTC", "USDT", "NOPE", "ETH\x00", "X" * 17, "Ξ"],
    "to_currency": ["USDT", "usdt", "ETH", "BTC", "", "USDT\u200b"],
    "amount": NUMBER_TEXTS,
}
QUOTE_IDS = ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "{12345678-1234-5678-1234-567812345678}"]
QUOTE_IDS += ["urn:uuid:12345678-1234-5678-1234-567812345678", "12345678123456781234567812345678", 0, 2**128, -1]
SWAP_FIELDS: dict[str, list[Any]] = {"quote_id": QUOTE_IDS, "slippage": NUMBER_TEXTS}


def test_swapping(scene, alice_client):
    rng = random.Random(SEED + 5)
    fields = {**SWAP_FIELDS, "quote_id": [*SWAP_FIELDS["quote_id"], scene["quote"]]}
    for case in range(CASES):
        if case % 2:
            body = mutated(rng, {"from_currency": "ETH", "to_currency": "USDT", "amount": "0.01"}, SWAP_QUOTE_FIELDS)
            path = "/api/v1/swap/quote"
        else:
            body = mutated(rng, {"quote_id": scene["quote"], "slippage": "0.01"}, fields)
            path = "/api/v1/swap"
        response = check(alice_client, "POST", path, body, *send_body(rng, body))
        if response.status_code < 400:
            assert isinstance(body, dict)
            for name in ("amount", "slippage"):
                assert not isinstance(body.get(name), str) or body[name].isascii(), body
    for swap_id in ("0", "9" * 40, "-1", "x", "\u0661"):
        check(alice_client, "GET", f"/api/v1/swap/{swap_id}", swap_id)


ASSETS = ["ETH", "eth", "BTC", "USDT", "NOPE", "%00", "%20", "ETH%20", "%ED%A0%80", "%FF", "x" * 300, "Ξ", "ß"]
ASSETS += ["%C4%B0", "ETH-USDT", "..", "%2E%2E", "null", "1", "%0A"]


def test_positions_and_closing_them(scene, alice_client):
    rng = random.Random(SEED + 6)
    quotes = {"quote": ["USDT", "usdt", "ETH", "BTC", "", " ", "NOPE", "\x00", "x" * 1000, "Ξ"]}
    for case in range(CASES):
        query = query_string(rng, quotes)
        if case % 3:
            check(alice_client, "GET", "/api/v1/positions" + query, query)
            continue
        path = f"/api/v1/positions/{rng.choice(ASSETS)}/close{query}"
        body = rng.choice([None, {}, {"quote": "USDT"}, {"quantity": "1"}, any_value(rng)])
        check(alice_client, "POST", path, (path, body), *send_body(rng, body, True) if body is not None else ())


SYMBOLS = ["ETH-USDT", "eth-usdt", "NOPE", "%00", "%ED%A0%80", "%FF", "X" * 300, "ÉTH-USDT", "%20", "ETH-USDT%0A"]
DATES = ["2024-01-01T00:00:00Z", "2024-01-01", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "now", "1e3", "١٢", ""]
DATES += ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59-14:00", "9999-12-30T00:00:00Z", "0001-01-01T00:00:00Z"]
DATES += ["0001-01-01T00:00:00+14:00", "2024-01-01T00:00:00+99:00", "+10000-01-01T00:00:00Z", "-2024-01-01T00:00:00Z"]
DATES += ["1704067200", "2024-01-01T00:00:00.9999999999Z"]
LIMITS = [*LIST_FIELDS["limit"], "100", "1000", "1001", "5000", "5001", str(10**30)]
MARKET_DATA: list[tuple[str, dict[str, list[str]]]] = [
    ("/api/v1/markets", {}),
    ("/api/v1/markets/{}", {}),
    ("/api/v1/markets/{}/ticker", {}),
    ("/api/v1/markets/{}/depth", {"limit": LIMITS}),
    ("/api/v1/markets/{}/trades", {"limit": LIMITS}),
    (
        "/api/v1/markets/{}/candles",
        {"interval": ["1m", "5m", "1h", "1d", "1w", "", "1M"], "start": DATES, "end": DATES, "limit": LIMITS},
    ),
    ("/api/v1/tickers", {}),
    ("/api/v1/rates", {"quote": ["USDT", "ETH", "usdt", "", "NOPE", "\x00", "x" * 17]}),
    ("/api/v1/time", {}),
]


def test_market_data(scene):
    rng = random.Random(SEED + 7)
    client = APIClient()
    for _ in range(CASES):
        path, own = rng.choice(MARKET_DATA)
        url = path.format(rng.choice(SYMBOLS)) + query_string(rng, own)
        check(client, "GET", url, url)


# --- Defects found ------------------------------------------------------------------------


def test_a_body_nested_deeper_than_the_bound_is_refused_before_it_is_decoded(scene, alice_client):
    """The web process runs with a recursion limit of 100000 (the blockchain libraries set
    it): a body of 70000 ``[`` crashed it with a segmentation fault."""
    for body in (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), b'{"orders": ' * 5000, b"[" * 100_000):
        for path in (ORDERS, ORDERS + "/batch", "/api/v1/swap/quote"):
            response = check(alice_client, "POST", path, body[:20], body, "application/json")
            assert response.status_code == 400
            assert body_of(response)["code"] == "malformed_json"
            assert "nested more than 64 levels" in body_of(response)["message"]
    shallow = encode({"orders": [[[[[[[[]]]]]]]]})
    response = check(alice_client, "POST", ORDERS + "/batch", shallow, shallow.encode(), "application/json")
    assert body_of(response)["results"][0]["error"]["code"] == "body_invalid"


def max_depth(text: str) -> int:
    """How deep a JSON decoder reading ``text`` goes: brackets outside strings, one by one."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            if depth == 0:
                break
            depth -= 1
    return deepest


LEAVES = [1, "a[b", 'q"{', "\\", "]}", None, "", '\\"[[']
KEYS = ["k", "[", '"}']


def random_json(rng: random.Random, depth: int) -> Any:
    """A value nested ``depth`` deep along one path, leaves and short branches beside it."""
    if depth <= 0:
        return rng.choice(LEAVES)
    inner = [rng.choice([*LEAVES, [], {}]) for _ in range(rng.randint(0, 2))]
    inner.insert(rng.randint(0, len(inner)), random_json(rng, depth - 1))
    if rng.random() < 0.5:
        return inner
    return {rng.choice(KEYS) + str(i): value for i, value in enumerate(inner)}


def test_the_depth_bound_is_exact_for_json_and_never_below_for_anything_else():
    rng = random.Random(SEED + 8)
    for _ in range(400):
        text = json.dumps(random_json(rng, rng.randint(0, 90)))
        for limit in (1, 3, MAX_DEPTH, max_depth(text), max_depth(text) - 1):
            assert nests_deeper_than(text, limit) == (max_depth(text) > limit), (text, limit)
        # Cut short or with stray brackets and quotes: a decoder stops at the first error,
        # having gone at most max_depth deep, which the bound never underestimates.
        broken = text[: rng.randint(0, len(text))] + "".join(rng.choice('[]{}"\\a,') for _ in range(rng.randint(0, 9)))
        for limit in (1, 3, MAX_DEPTH, max_depth(broken) - 1):
            assert nests_deeper_than(broken, limit) or max_depth(broken) <= limit, (broken, limit)
    assert nests_deeper_than("[" * 100_000)
    assert nests_deeper_than('"' + "[" * 100 + '"') is False
    assert nests_deeper_than('["\\"' + "[" * 100 + '"]') is False


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_beyond_the_upload_limit_is_413(scene, alice_client):
    body = encode({**ORDER_BASES[0], "client_order_id": "x" * 2000}).encode()
    for path in (ORDERS, ORDERS + "/batch", "/api/v1/swap", "/api/v1/positions/ETH/close"):
        response = check(alice_client, "POST", path, path, body, "application/json")
        assert (response.status_code, body_of(response)["code"]) == (413, "request_too_large")


@override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=10)
def test_too_many_query_parameters_are_400(scene, alice_client):
    query = "?" + "&".join(f"x{i}=1" for i in range(11))
    for method, path in (("GET", ORDERS), ("DELETE", ORDERS), ("GET", "/api/v1/trades"), ("GET", "/api/v1/positions")):
        response = check(alice_client, method, path + query, path)
        assert (response.status_code, body_of(response)["code"]) == (400, "too_many_fields")
    response = check(APIClient(), "GET", "/api/v1/markets/ETH-USDT/depth" + query, "depth")
    assert (response.status_code, body_of(response)["code"]) == (400, "too_many_fields")


def test_a_limit_that_is_no_page_size_is_400(scene, alice_client):
    """DRF answered these with the default page, as if the client had asked for it."""
    for limit in ("0", "-1", "", "abc", "1e3", "١٢", "2.0", " 5", "00", "+5"):
        for path in (ORDERS, "/api/v1/trades"):
            response = check(alice_client, "GET", f"{path}?{urlencode({'limit': limit})}", limit)
            assert (response.status_code, body_of(response)["code"]) == (400, "limit_invalid"), limit


def test_a_limit_beyond_what_a_page_holds_is_not_refused(scene, alice_client):
    for limit in ("500", "501", "0500", str(10**30), "9" * 5000):
        response = check(alice_client, "GET", f"{ORDERS}?limit={limit}", limit)
        assert response.status_code == 200
        assert len(body_of(response)["results"]) == Order.objects.filter(user__email="alice@example.com").count()


def test_candles_up_to_the_end_of_time_are_400(scene):
    """The selector reads to the end of the candle that holds ``end``: past the last day
    a date can hold, that was an ``OverflowError`` and a 500."""
    for end in ("9999-12-31T23:59:59Z", "9999-12-31T00:00:01Z", "9999-12-31T10:00:00+05:00"):
        response = check(APIClient(), "GET", f"/api/v1/markets/ETH-USDT/candles?{urlencode({'end': end})}", end)
        assert (response.status_code, body_of(response)["code"]) == (400, "end_overflow")
    ok = APIClient().get("/api/v1/markets/ETH-USDT/candles", {"interval": "1d", "end": "9999-12-30T23:59:59Z"})
    assert ok.status_code == 200


OTHER_SCRIPTS = ["1\u06605", "١٢", "٣.\u0665", "\uff11\uff12", "\U0001d7d9", "1_000", "\u00a012"]


# Money as the API does not take it: a JSON number with a fraction or an exponent (the JSON
# parser has already rounded it: 1.00000000000000001 arrives as 1.0), an exponent in text,
# whitespace, a sign other than minus, a point without digits on both sides.
NOT_PLAIN = [
    Raw("1.00000000000000001"),
    Raw("0.5"),
    Raw("1e3"),
    Raw("2E+3"),
    "1e3",
    "1E-2",
    " 1000",
    "1000 ",
    "\t5",
    "+5",
    ".5",
    "5.",
    "0x10",
]


def assert_money_refused(scene: dict[str, Any], client: APIClient, value: Any) -> None:
    """``value`` as each price and amount of an order, a batch, a swap and a close: refused,
    with the field named in the code, and nothing changed."""
    cases: list[tuple[str, dict[str, Any], str]] = [
        (ORDERS, {**ORDER_BASES[0], "price": value}, "price_invalid"),
        (ORDERS, {**ORDER_BASES[0], "quantity": value}, "quantity_invalid"),
        (ORDERS, {**ORDER_BASES[2], "quote_amount": value}, "quote_amount_invalid"),
        (ORDERS, {**ORDER_BASES[5], "stop_price": value}, "stop_price_invalid"),
        ("/api/v1/swap/quote", {"from_currency": "ETH", "to_currency": "USDT", "amount": value}, "amount_invalid"),
        ("/api/v1/swap", {"quote_id": scene["quote"], "slippage": value}, "slippage_invalid"),
        ("/api/v1/positions/ETH/close?quote=USDT", {"min_price": value}, "min_price_invalid"),
    ]
    for path, body, code in cases:
        response = check(client, "POST", path, body, encode(body).encode(), "application/json")
        assert (response.status_code, body_of(response)["code"]) == (400, code), (value, body_of(response))
    for name in ("price", "quantity"):
        batch = {"orders": [{**ORDER_BASES[0], name: value}]}
        response = check(client, "POST", ORDERS + "/batch", batch, encode(batch).encode(), "application/json")
        assert body_of(response)["results"][0]["error"]["code"] == f"{name}_invalid", value


def test_a_price_or_an_amount_in_digits_other_than_ascii_is_refused(scene, alice_client):
    """Python reads any script's digits: 1, an Arabic-Indic zero and 5 look like "1.5" and
    were placed at 105."""
    for text in OTHER_SCRIPTS:
        assert_money_refused(scene, alice_client, text)


def test_a_price_or_an_amount_that_is_not_plain_digits_is_refused(scene, alice_client):
    """Orders, swaps and closes read money as every other endpoint does
    (``wallets.api.fields``): strings of plain digits, or whole JSON numbers."""
    for value in NOT_PLAIN:
        assert_money_refused(scene, alice_client, value)


def test_a_whole_json_number_is_read_exactly(scene, alice_client):
    """A JSON integer is exact, so it is taken as the digits it is."""
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": 1000, "quantity": "0.01"}
    response = check(alice_client, "POST", ORDERS, body, encode(body).encode(), "application/json")
    assert response.status_code == 201, body_of(response)
    assert body_of(response)["price"] == "1000"


def test_an_error_that_names_a_lone_surrogate_is_answered(scene, alice_client):
    """JSON may carry ``"\\ud800"``; the error named it (an unknown field, a choice) and
    rendering it as UTF-8 failed: a 500."""
    cases = [
        (ORDERS, '{"market": "ETH-USDT", "side": "\\ud800", "type": "limit"}', "side_invalid_choice"),
        (ORDERS, '{"market": "ETH-USDT", "side": "buy", "type": "limit", "\\udfff": 1}', "unknown_field"),
        (
            "/api/v1/swap/quote",
            '{"from_currency": "ETH", "to_currency": "USDT", "amount": "1", "\\ud800": 1}',
            "unknown_field",
        ),
        ("/api/v1/positions/ETH/close", '{"\\ud800": 1}', "unknown_field"),
    ]
    for path, text, code in cases:
        response = check(alice_client, "POST", path, text, text.encode(), "application/json")
        assert (response.status_code, body_of(response)["code"]) == (400, code)
        assert "\\ud" in response.content.decode("ascii")  # escaped, as JSON allows
    text = '{"orders": [{"market": "ETH-USDT", "side": "buy", "type": "\\ud800"}]}'
    response = check(alice_client, "POST", ORDERS + "/batch", text, text.encode(), "application/json")
    assert body_of(response)["results"][0]["error"]["code"] == "type_invalid_choice"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("content_type", BYTES_CODECS)
def test_a_charset_that_is_no_text_encoding_is_refused_as_the_project_is_served(content_type):
    """Through ASGI (the project has no WSGI application), with a query string too."""

    async def requests() -> list[Any]:
        client = AsyncClient()
        return [
            await client.generic("POST", "/api/v1/auth/token?x=1", b"{}", content_type=content_type),
            await client.get("/api/v1/markets/NOPE/depth?limit=5", headers={"content-type": content_type}),
        ]

    token, depth = async_to_sync(requests)()
    assert (token.status_code, token.json()["code"]) == (400, "malformed_json")
    assert (depth.status_code, depth.json()["code"]) == (404, "unknown_market")


def test_a_signature_that_is_not_ascii_is_refused_as_invalid(scene, alice):
    ApiKey.objects.create(
        user=alice, label="bot", key="key-1", secret_encrypted=encrypt_secret("secret"), scopes=["read", "trade"]
    )
    expires = str(int(time.time() * 1000) + 10_000)
    headers = {"HTTP_X_KB_APIKEY": "key-1", "HTTP_X_KB_EXPIRES": expires, "HTTP_X_KB_SIGNATURE": "é" * 64}
    response = APIClient().get(ORDERS, **headers)
    assert (response.status_code, body_of(response)["code"]) == (401, "signature_invalid")
    arabic_expiry = expires.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    response = APIClient().get(ORDERS, **{**headers, "HTTP_X_KB_EXPIRES": arabic_expiry})
    assert (response.status_code, body_of(response)["code"]) == (401, "signature_expired")


def test_plain_spellings_of_one_price_place_alike(scene, alice_client):
    for price in ("1000", "1000.000", "01000", 1000):
        body = {**ORDER_BASES[0], "price": price}
        response = alice_client.post(ORDERS, body)
        assert response.status_code == 201, response.json()
        assert Decimal(response.json()["price"]) == 1000


def test_the_generators_repeat_themselves():
    """The same seed gives the same requests: a failure found once is found again."""
    first, second = random.Random(SEED), random.Random(SEED)
    assert [encode(mutated(first, ORDER_BASES[0], ORDER_FIELDS)) for _ in range(50)] == [
        encode(mutated(second, ORDER_BASES[0], ORDER_FIELDS)) for _ in range(50)
    ]
