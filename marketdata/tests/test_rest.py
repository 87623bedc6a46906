"""The public REST endpoints, over aggregates the real matcher maintains; every value is
checked against the trades and orders, computed here independently."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from marketdata.models import Candle, DepthLevel, MarketState
from marketdata.services import marketdata_rebuild
from marketdata.tests.conftest import D, drain, place
from orders.models import Order, Trade
from wallets.tests.factories import CurrencyFactory

pytestmark = pytest.mark.django_db
API = "/api/v1"


def book_from_orders(symbol: str = "ETH-USDT") -> dict[str, dict[Decimal, Decimal]]:
    book: dict[str, dict[Decimal, Decimal]] = {"buy": {}, "sell": {}}
    for order in Order.objects.filter(market__symbol=symbol, status__in=("open", "partially_filled")):
        side = book[order.side]
        side[order.price] = side.get(order.price, D(0)) + order.quantity - order.filled_quantity
    return book


def as_book(levels: list[list[str]]) -> dict[Decimal, Decimal]:
    return {D(p): D(q) for p, q in levels}


def trade_some(alice_client, bob_client) -> None:
    """Resting asks and bids from Alice, two crossing orders from Bob."""
    for price, qty in (("2001", "1"), ("2002", "2.5"), ("2003", "1")):
        place(alice_client, side="sell", price=price, quantity=qty)
    for price, qty in (("1999", "1"), ("1998", "3")):
        place(alice_client, side="buy", price=price, quantity=qty)
    drain()
    place(bob_client, side="buy", price="2002", quantity="2")  # 1 @ 2001, 1 @ 2002
    drain()
    place(bob_client, side="sell", price="1999", quantity="0.4")  # 0.4 @ 1999
    drain()


def test_public_endpoints_need_no_login(api_client, markets):
    assert api_client.get(f"{API}/time").status_code == 200
    body = api_client.get(f"{API}/markets/eth-usdt").json()
    assert body == {
        "symbol": "ETH-USDT",
        "base": "ETH",
        "quote": "USDT",
        "status": "active",
        "tick_size": "0.01",
        "lot_size": "0.0001",
        "min_notional": "10",
        "maker_fee_rate": "0.001",
        "taker_fee_rate": "0.002",
        "base_precision": 18,
        "quote_precision": 6,
    }
    assert [m["symbol"] for m in api_client.get(f"{API}/markets").json()] == ["BTC-USDT", "ETH-USDT"]


def test_ticker_depth_trades_and_candles_follow_the_matcher(api_client, alice_client, bob_client):
    trade_some(alice_client, bob_client)
    trades = list(Trade.objects.order_by("trade_no"))
    assert [(t.price, t.quantity) for t in trades] == [(D(2001), D(1)), (D(2002), D(1)), (D(1999), D("0.4"))]

    depth = api_client.get(f"{API}/markets/ETH-USDT/depth").json()
    expected = book_from_orders()
    assert as_book(depth["bids"]) == expected["buy"]
    assert as_book(depth["asks"]) == expected["sell"]
    assert [p for p, _ in depth["bids"]] == ["1999", "1998"]
    assert [p for p, _ in depth["asks"]] == ["2002", "2003"]
    assert depth["seq"] == MarketState.objects.get().seq == 3  # one per batch that changed the book
    assert api_client.get(f"{API}/markets/ETH-USDT/depth?limit=1").json()["bids"] == [["1999", "0.6"]]

    ticker = api_client.get(f"{API}/markets/ETH-USDT/ticker").json()
    prices = [t.price for t in trades]
    base = sum(t.quantity for t in trades)
    quote = sum(t.quote_amount for t in trades)
    change = prices[-1] - prices[0]
    assert (ticker["open"], ticker["high"], ticker["low"], ticker["last"]) == ("2001", "2002", "1999", "1999")
    assert (D(ticker["base_volume"]), D(ticker["quote_volume"])) == (base, quote)
    assert D(ticker["change"]) == change
    assert D(ticker["change_percent"]) == (change * 100 / prices[0]).quantize(D("0.01"))
    assert (ticker["bid"], ticker["bid_quantity"], ticker["ask"], ticker["ask_quantity"]) == (
        "1999",
        "0.6",
        "2002",
        "1.5",
    )
    assert ticker["trade_count"] == 3
    listed = {t["symbol"]: t for t in api_client.get(f"{API}/tickers").json()}
    assert {**listed["ETH-USDT"], "close_time": None} == {**ticker, "close_time": None}
    assert (listed["BTC-USDT"]["last"], listed["BTC-USDT"]["trade_count"]) == (None, 0)

    public = api_client.get(f"{API}/markets/ETH-USDT/trades?limit=2").json()
    assert [(t["id"], t["price"], t["quantity"], t["side"]) for t in public] == [
        (3, "1999", "0.4", "sell"),
        (2, "2002", "1", "buy"),
    ]

    candles = api_client.get(f"{API}/markets/ETH-USDT/candles?interval=1m").json()
    minutes = {}
    for t in trades:
        minutes.setdefault(t.created_at.replace(second=0, microsecond=0), []).append(t)
    assert len(candles) == len(minutes)
    for candle, (start, group) in zip(candles, sorted(minutes.items()), strict=True):
        assert D(candle["open"]) == group[0].price and D(candle["close"]) == group[-1].price
        assert D(candle["high"]) == max(t.price for t in group)
        assert D(candle["low"]) == min(t.price for t in group)
        assert D(candle["base_volume"]) == sum(t.quantity for t in group)
        assert candle["open_time"] == start.isoformat().replace("+00:00", "Z")


def test_candles_of_every_interval_match_trades_spread_over_days(api_client, alice_client, bob_client):
    trade_some(alice_client, bob_client)
    place(alice_client, side="sell", price="2010", quantity="5")
    drain()
    for i in range(6):
        place(bob_client, side="buy", price="2010", quantity=f"0.{i + 1}")
        drain()
    # Spread the trades over two days, then rebuild the aggregates from the trades table.
    base = timezone.now().replace(hour=10, minute=2, second=5, microsecond=0) - timedelta(days=1)
    offsets = [0, 3, 7, 16, 61, 250, 1500, 1504, 1505]
    for trade, minutes in zip(Trade.objects.order_by("trade_no"), offsets, strict=True):
        Trade.objects.filter(pk=trade.pk).update(created_at=base + timedelta(minutes=minutes))
    call_command("marketdata_rebuild", "--market", "ETH-USDT")
    trades = list(Trade.objects.order_by("trade_no"))
    sizes = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
    for interval, seconds in sizes.items():
        groups: dict[int, list[Trade]] = {}
        for t in trades:
            epoch = int(t.created_at.timestamp())
            groups.setdefault(epoch - epoch % seconds, []).append(t)
        got = api_client.get(f"{API}/markets/ETH-USDT/candles", {"interval": interval}).json()
        want = [
            (
                start,
                g[0].price,
                max(t.price for t in g),
                min(t.price for t in g),
                g[-1].price,
                sum(t.quantity for t in g),
                sum(t.quote_amount for t in g),
                len(g),
            )
            for start, g in sorted(groups.items())
        ]
        assert [
            (
                int(timezone.datetime.fromisoformat(c["open_time"]).timestamp()),
                D(c["open"]),
                D(c["high"]),
                D(c["low"]),
                D(c["close"]),
                D(c["base_volume"]),
                D(c["quote_volume"]),
                c["trade_count"],
            )
            for c in got
        ] == want, interval
    # A window and a limit.
    start = (base + timedelta(minutes=5)).isoformat()
    end = (base + timedelta(minutes=61)).isoformat()
    got = api_client.get(f"{API}/markets/ETH-USDT/candles", {"interval": "1m", "start": start, "end": end}).json()
    assert len(got) == 3  # minutes 7, 16, 61
    got = api_client.get(f"{API}/markets/ETH-USDT/candles", {"interval": "1m", "limit": 2}).json()
    assert len(got) == 2 and D(got[-1]["close"]) == trades[-1].price


def test_rebuild_reproduces_what_the_matcher_maintained(alice_client, bob_client, markets):
    trade_some(alice_client, bob_client)

    def snapshot():
        return (
            list(
                Candle.objects.order_by("interval", "open_time").values_list(
                    "interval",
                    "open_time",
                    "open",
                    "high",
                    "low",
                    "close",
                    "base_volume",
                    "quote_volume",
                    "trade_count",
                )
            ),
            sorted(DepthLevel.objects.values_list("side", "ticks", "price", "quantity")),
            MarketState.objects.values_list("last_price", "last_trade_no", "best_bid", "best_ask").get(),
        )

    before = snapshot()
    seq = MarketState.objects.get().seq
    state = marketdata_rebuild(market=markets["ETH-USDT"])
    assert snapshot() == before
    assert state.seq == seq + 1
    # The matcher carries on from the rebuilt state.
    place(bob_client, side="buy", price="2003", quantity="0.5")
    drain()
    assert MarketState.objects.get().seq == seq + 2
    assert D(Candle.objects.filter(interval="1d").get().base_volume) == sum(t.quantity for t in Trade.objects.all())


def test_rates_go_through_an_intermediate_currency(api_client, alice_client, bob_client):
    # ETH-USDT: bid 1999 / ask 2001 -> mid 2000.  BTC-USDT: only a last price, 40000.
    place(alice_client, side="sell", price="2001", quantity="1")
    place(alice_client, side="buy", price="1999", quantity="1")
    drain()
    place(alice_client, market="BTC-USDT", side="sell", price="40000", quantity="0.1")
    drain("BTC-USDT")
    place(bob_client, market="BTC-USDT", side="buy", price="40000", quantity="0.1")
    drain("BTC-USDT")
    CurrencyFactory(code="DOGE")
    body = api_client.get(f"{API}/rates", {"quote": "eth"}).json()
    rates = {r["currency"]: r for r in body["rates"]}
    assert body["quote"] == "ETH"
    assert rates["ETH"]["rate"] == "1"
    assert (rates["USDT"]["rate"], rates["USDT"]["route"], rates["USDT"]["sources"]) == (
        "0.0005",
        ["ETH-USDT"],
        ["mid"],
    )
    assert (rates["BTC"]["rate"], rates["BTC"]["route"], rates["BTC"]["sources"]) == (
        "20",
        ["BTC-USDT", "ETH-USDT"],
        ["last", "mid"],
    )
    assert (rates["DOGE"]["rate"], rates["DOGE"]["reason"]) == (None, "no_route")
    usdt = {r["currency"]: r["rate"] for r in api_client.get(f"{API}/rates").json()["rates"]}
    assert (usdt["ETH"], usdt["BTC"], usdt["USDT"]) == ("2000", "40000", "1")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/markets/NOPE-USDT", 404, "unknown_market"),
        ("/markets/NOPE-USDT/ticker", 404, "unknown_market"),
        ("/markets/NOPE-USDT/depth", 404, "unknown_market"),
        ("/markets/ETH-USDT/depth?limit=0", 400, "limit_min_value"),
        ("/markets/ETH-USDT/depth?limit=x", 400, "limit_invalid"),
        ("/markets/ETH-USDT/depth?lmit=5", 400, "unknown_field"),
        ("/markets/ETH-USDT/trades?limit=100000", 400, "limit_max_value"),
        ("/markets/ETH-USDT/candles?interval=2m", 400, "interval_invalid_choice"),
        ("/markets/ETH-USDT/candles?start=yesterday", 400, "start_invalid"),
        ("/markets/ETH-USDT/candles?start=2026-01-02T00:00Z&end=2026-01-01T00:00Z", 400, "after_end"),
        ("/rates?quote=XXX", 400, "unknown_currency"),
    ],
)
def test_bad_queries_get_a_clear_error(api_client, markets, path, status, code):
    response = api_client.get(API + path)
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code


def test_reads_do_not_grow_with_the_trade_history(api_client, alice_client, bob_client, django_assert_max_num_queries):
    trade_some(alice_client, bob_client)
    for path in ("/markets/ETH-USDT/ticker", "/markets/ETH-USDT/depth", "/markets/ETH-USDT/candles?interval=1h"):
        with django_assert_max_num_queries(6):
            assert api_client.get(API + path).status_code == 200


def test_a_batch_costs_a_bounded_number_of_queries(alice_client, bob_client, matcher, django_assert_max_num_queries):
    for i in range(20):
        place(alice_client, side="sell", price=str(2000 + i), quantity="1")
    place(bob_client, side="buy", price="2019", quantity="20")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        matcher.run_once()
    marketdata = [q["sql"] for q in ctx.captured_queries if "marketdata_" in q["sql"]]
    assert len(marketdata) <= 10, marketdata
