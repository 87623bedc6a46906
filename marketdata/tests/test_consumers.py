"""The /ws/v1/ stream through Channels' WebsocketCommunicator against the real ASGI app,
with the real matcher producing the events (in-memory channel layer)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.db import OperationalError
from rest_framework.test import APIClient

from accounts.api_keys import api_key_create, sign
from accounts.services import tokens_issue
from accounts.tests.helpers import enable_otp, otp_code
from kootabase.asgi import application
from marketdata import consumers
from marketdata.hub import Hub, get_hub
from marketdata.services import marketdata_rebuild
from marketdata.tests.conftest import D, drain, early_in_a_minute, place
from orders.models import Market

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1")]


def run(scenario) -> None:
    async_to_sync(scenario)()


async def connect() -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/ws/v1/", headers=ORIGIN)
    connected, _ = await ws.connect()
    assert connected
    return ws


async def send(ws: WebsocketCommunicator, **message: Any) -> None:
    await ws.send_to(text_data=json.dumps(message))


async def frames_until(ws: WebsocketCommunicator, match, timeout: float = 5.0) -> tuple[dict, list[dict]]:
    """Read frames until ``match(frame)``; returns it and the frames read before it."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching frame; got {seen}")
        frame = await ws.receive_json_from(timeout=left)
        if match(frame):
            return frame, seen
        seen.append(frame)


def on(op: str, channel: str | None = None):
    return lambda f: f.get("op") == op and (channel is None or f.get("channel") == channel)


async def call(func, *args, **kwargs):
    return await database_sync_to_async(func)(*args, **kwargs)


def apply_depth(book: dict[str, dict[str, str]], data: dict) -> None:
    for side, levels in (("bids", data["bids"]), ("asks", data["asks"])):
        for price, qty in levels:
            if qty == "0":
                book[side].pop(price, None)
            else:
                book[side][price] = qty


def rest_depth(symbol: str = "ETH-USDT") -> dict:
    return APIClient().get(f"/api/v1/markets/{symbol}/depth?limit=5000").json()


def test_bad_messages_get_error_frames_and_the_connection_stays_usable(markets):
    async def scenario() -> None:
        ws = await connect()
        cases = [
            ("{oops", "malformed_json"),
            # Nested past the stack under the process's recursion limit: it once crashed the worker.
            ('{"op": "ping", "x": ' + "[" * 70_000 + "]" * 70_000 + "}", "malformed_json"),
            ('{"op": "dance"}', "unknown_op"),
            ('["subscribe"]', "missing_op"),
            ('{"op": "subscribe", "channels": "depth.ETH-USDT"}', "channels_invalid"),
            ('{"op": "subscribe", "channels": ["weather.ETH-USDT"]}', "unknown_channel"),
            ('{"op": "subscribe", "channels": ["depth.NOPE-USDT"]}', "unknown_channel"),
            ('{"op": "subscribe", "channels": ["candles.2m.ETH-USDT"]}', "unknown_channel"),
            ('{"op": "subscribe", "channels": ["ticker.ETH-USDT", "orders"]}', "auth_required"),
            ('{"op": "auth", "token": "not-a-jwt"}', "auth_failed"),
            ('{"op": "auth"}', "auth_failed"),
        ]
        for text, code in cases:
            await ws.send_to(text_data=text)
            frame = await ws.receive_json_from()
            assert (frame["op"], frame["code"]) == ("error", code), text
        # Nothing of a refused subscribe was kept: the ticker sends no snapshot.
        assert await ws.receive_nothing(timeout=0.2)
        many = [f"candles.{i}.ETH-USDT" for i in ("1m", "5m", "15m", "1h", "4h", "1d")]
        many += [f"{k}.{s}" for k in ("depth", "trades", "ticker") for s in ("ETH-USDT", "BTC-USDT")]
        await send(ws, op="subscribe", id=1, channels=many)
        ack, _ = await frames_until(ws, on("subscribed"))
        assert ack["id"] == 1
        await asyncio.sleep(0.3)
        while not await ws.receive_nothing(timeout=0.1):
            await ws.receive_json_from()
        # The limit per connection (50), lowered to 13 here: 12 are taken.
        consumers_limit = consumers.MAX_SUBSCRIPTIONS
        consumers.MAX_SUBSCRIPTIONS = 13
        try:
            await send(ws, op="subscribe", channels=["tickers", "depth.ETH-USDT"])
            assert (await ws.receive_json_from())["op"] == "subscribed"  # depth.ETH-USDT is already counted
            await ws.receive_json_from()  # the tickers snapshot
            await send(ws, op="subscribe", channels=["ticker.ETH-USDT", "candles.1m.ETH-USDT"])
            assert (await ws.receive_json_from())["op"] == "subscribed"  # both already held
            await send(ws, op="subscribe", channels=["candles.1d.BTC-USDT"])
            assert (await ws.receive_json_from())["code"] == "too_many_subscriptions"
        finally:
            consumers.MAX_SUBSCRIPTIONS = consumers_limit
        await send(ws, op="ping", id=9)
        assert await ws.receive_json_from() == {"op": "pong", "id": 9}
        await ws.disconnect()

    run(scenario)


def test_depth_snapshot_then_gap_free_diffs_rebuild_the_rest_book(alice_client, bob_client):
    async def scenario() -> None:
        await call(place, alice_client, side="sell", price="2001", quantity="1")
        await call(place, alice_client, side="buy", price="1999", quantity="2")
        await call(drain)
        ws = await connect()
        await send(ws, op="subscribe", id="a", channels=["depth.ETH-USDT", "trades.ETH-USDT"])
        assert (await ws.receive_json_from())["op"] == "subscribed"
        snapshot = await ws.receive_json_from()
        assert snapshot["op"] == "snapshot" and snapshot["channel"] == "depth.ETH-USDT"
        assert snapshot["data"] == {"seq": 1, "bids": [["1999", "2"]], "asks": [["2001", "1"]]}
        book = {"bids": dict(snapshot["data"]["bids"]), "asks": dict(snapshot["data"]["asks"])}
        seq = snapshot["data"]["seq"]

        # Several batches: new levels, a trade that removes a level, a cancel.
        await call(place, alice_client, side="sell", price="2002", quantity="3")
        await call(drain)
        await call(place, bob_client, side="buy", price="2001", quantity="1")
        await call(drain)
        await call(place, bob_client, side="sell", price="1999", quantity="0.5")
        await call(drain)
        trades: list[dict] = []
        expected_seq = (await call(rest_depth))["seq"]
        while seq < expected_seq:
            frame = await ws.receive_json_from(timeout=3)
            if frame["channel"] == "trades.ETH-USDT":
                trades.extend(frame["data"])
                continue
            data = frame["data"]
            assert frame["op"] == "update"
            assert data["first_seq"] == seq + 1, "a gap in the depth stream"
            assert data["last_seq"] >= data["first_seq"]
            apply_depth(book, data)
            seq = data["last_seq"]
        rest = await call(rest_depth)
        assert seq == rest["seq"]
        assert book == {"bids": dict(rest["bids"]), "asks": dict(rest["asks"])}
        while len(trades) < 2:
            frame, _ = await frames_until(ws, on("update", "trades.ETH-USDT"))
            trades.extend(frame["data"])
        assert [(t["id"], t["price"], t["quantity"], t["side"]) for t in trades] == [
            (1, "2001", "1", "buy"),
            (2, "1999", "0.5", "sell"),
        ]
        await ws.disconnect()

    run(scenario)


def test_busy_market_diffs_are_coalesced(alice_client, bob_client):
    async def scenario() -> None:
        ws = await connect()
        await send(ws, op="subscribe", channels=["depth.ETH-USDT"])
        await ws.receive_json_from()
        snapshot = await ws.receive_json_from()
        from marketdata.hub import get_hub

        get_hub().depth_interval = 1.0  # one diff per second at most
        for i in range(5):
            await call(place, alice_client, side="sell", price=str(2010 + i), quantity="1")
            await call(drain)
        # The first diff leaves at once (the market was quiet), the rest are merged into
        # at most one per second: fewer diffs than batches, gap-free, every level present.
        seq, diffs = snapshot["data"]["seq"], []
        while seq < snapshot["data"]["seq"] + 5:
            diff = (await ws.receive_json_from(timeout=3))["data"]
            assert diff["first_seq"] == seq + 1
            seq = diff["last_seq"]
            diffs.append(diff)
        assert len(diffs) < 5
        assert sorted(p for d in diffs for p, _ in d["asks"]) == ["2010", "2011", "2012", "2013", "2014"]
        await ws.disconnect()

    run(scenario)


def test_rebuild_sends_a_fresh_snapshot(alice_client, markets):
    async def scenario() -> None:
        await call(place, alice_client, side="sell", price="2001", quantity="1")
        await call(drain)
        ws = await connect()
        await send(ws, op="subscribe", channels=["depth.ETH-USDT"])
        await ws.receive_json_from()
        first = await ws.receive_json_from()
        await call(marketdata_rebuild, market=await call(Market.objects.get, symbol="ETH-USDT"))
        again = await ws.receive_json_from(timeout=3)
        assert again["op"] == "snapshot"
        assert again["data"]["seq"] == first["data"]["seq"] + 1
        assert again["data"]["asks"] == first["data"]["asks"]
        await ws.disconnect()

    run(scenario)


def test_ticker_and_candles_follow_trades(alice_client, bob_client):
    early_in_a_minute()

    async def scenario() -> None:
        ws = await connect()
        await send(ws, op="subscribe", channels=["ticker.ETH-USDT", "candles.1m.ETH-USDT", "tickers"])
        await ws.receive_json_from()
        _, _ = await frames_until(ws, on("snapshot", "tickers"))
        await call(place, alice_client, side="sell", price="2001", quantity="1")
        await call(place, alice_client, side="sell", price="2005", quantity="1")
        await call(drain)
        await call(place, bob_client, side="buy", price="2005", quantity="1.5")
        await call(drain)
        latest: dict[str, Any] = {}
        deadline = time.monotonic() + 15  # a bound on a busy machine, not a timing target
        while len(latest) < 3 or latest["ticker.ETH-USDT"]["trade_count"] < 2:
            frame = await ws.receive_json_from(timeout=max(0.01, deadline - time.monotonic()))
            if frame["op"] == "update":
                latest[frame["channel"]] = frame["data"][0] if frame["channel"] == "tickers" else frame["data"]
        data = latest["ticker.ETH-USDT"]
        assert (data["open"], data["high"], data["low"], data["last"]) == ("2001", "2005", "2001", "2005")
        assert (D(data["base_volume"]), D(data["quote_volume"])) == (D("1.5"), D("2001") + D("2005") * D("0.5"))
        candle = latest["candles.1m.ETH-USDT"]
        assert (candle["open"], candle["close"], candle["trade_count"]) == ("2001", "2005", 2)
        tickers = {"data": [latest["tickers"]]}
        assert tickers["data"][0]["symbol"] == "ETH-USDT"
        await ws.disconnect()

    run(scenario)


def test_a_failed_ticker_read_is_tried_again(monkeypatch, alice_client, bob_client):
    read_slow = Hub._read_slow
    calls = []

    def failing_once(feed, intervals):
        calls.append(feed.symbol)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return read_slow(feed, intervals)

    monkeypatch.setattr(Hub, "_read_slow", staticmethod(failing_once))

    async def scenario() -> None:
        ws = await connect()
        await send(ws, op="subscribe", channels=["ticker.ETH-USDT"])
        await ws.receive_json_from()
        await frames_until(ws, on("snapshot", "ticker.ETH-USDT"))
        await call(place, alice_client, side="sell", price="2001", quantity="1")
        await call(place, bob_client, side="buy", price="2001", quantity="1")
        await call(drain)
        update, _ = await frames_until(ws, on("update", "ticker.ETH-USDT"))
        assert (update["data"]["last"], update["data"]["trade_count"]) == ("2001", 1)
        assert len(calls) >= 2  # the failed read, then the one that sent the update
        await ws.disconnect()

    run(scenario)


def test_private_channels_carry_only_the_users_own_events(alice, bob, alice_client, bob_client):
    enable_otp(bob)
    created = api_key_create(user=bob, label="bot", scopes=["read"], otp_code=otp_code(bob))

    async def scenario() -> None:
        a = await connect()
        await send(a, op="auth", id=1, token=(await call(tokens_issue, user=alice))["access"])
        assert await a.receive_json_from() == {"op": "authenticated", "id": 1, "user_id": alice.pk}
        b = await connect()
        expires = int(time.time() * 1000) + 10_000
        signature = sign(secret=created.secret, method="GET", path="/ws/v1/", query="", expires=expires, body="auth")
        await send(b, op="auth", id=2, api_key=created.api_key.key, expires=expires, signature=signature)
        assert await b.receive_json_from() == {"op": "authenticated", "id": 2, "user_id": bob.pk}
        # The same signature again is a replay.
        c = await connect()
        await send(c, op="auth", api_key=created.api_key.key, expires=expires, signature=signature)
        refused = await c.receive_json_from()
        assert (refused["code"], refused["details"]["reason"]) == ("auth_failed", "signature_replayed")
        await c.disconnect()
        for ws in (a, b):
            await send(ws, op="subscribe", channels=["orders", "trades", "balances"])
            assert (await ws.receive_json_from())["op"] == "subscribed"

        sell = await call(place, alice_client, side="sell", price="2000", quantity="1")
        await call(drain)
        buy = await call(place, bob_client, side="buy", price="2000", quantity="1")
        await call(drain)
        await asyncio.sleep(0.2)
        got: dict[str, list[dict]] = {"a": [], "b": []}
        for name, ws in (("a", a), ("b", b)):
            while not await ws.receive_nothing(timeout=0.2):
                got[name].append(await ws.receive_json_from())
        a_orders = {f["data"]["id"] for f in got["a"] if f["channel"] == "orders"}
        b_orders = {f["data"]["id"] for f in got["b"] if f["channel"] == "orders"}
        assert a_orders == {sell["id"]} and b_orders == {buy["id"]}
        a_fill = [f["data"] for f in got["a"] if f["channel"] == "trades"]
        b_fill = [f["data"] for f in got["b"] if f["channel"] == "trades"]
        assert [(t["order_id"], t["side"], t["role"], t["fee"]) for t in a_fill] == [(sell["id"], "sell", "maker", "2")]
        assert [(t["order_id"], t["side"], t["role"], t["fee"]) for t in b_fill] == [(buy["id"], "buy", "taker", "4")]
        a_balances = [f["data"] for f in got["a"] if f["channel"] == "balances"][-1]
        assert {b["currency"]: (Decimal(b["available"]), Decimal(b["locked"])) for b in a_balances} == {
            "ETH": (D(999), D(0)),
            "USDT": (D(1001998), D(0)),
        }
        await a.disconnect()
        await b.disconnect()

    run(scenario)


def test_unsubscribe_stops_the_channel(alice_client):
    async def scenario() -> None:
        ws = await connect()
        await send(ws, op="subscribe", channels=["trades.ETH-USDT", "depth.ETH-USDT"])
        await ws.receive_json_from()
        await ws.receive_json_from()
        await send(ws, op="unsubscribe", id=3, channels=["depth.ETH-USDT", "trades.ETH-USDT"])
        assert await ws.receive_json_from() == {
            "op": "unsubscribed",
            "id": 3,
            "channels": ["depth.ETH-USDT", "trades.ETH-USDT"],
        }
        await call(place, alice_client, side="sell", price="2001", quantity="1")
        await call(drain)
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()

    run(scenario)


class Gate:
    """The server's side of the socket as a slow client makes it: while closed, sending a
    frame waits (as uvicorn's send does when the socket's buffer is full)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    def wrap(self, app):
        async def gated(scope, receive, send):
            async def gated_send(message):
                if message["type"] == "websocket.send":
                    await self.open.wait()
                await send(message)

            await app(scope, receive, gated_send)

        return gated


def publish_trades(count: int) -> None:
    """Market updates with one trade each, handed to the hub in one go (no turn for the
    connections' writers in between)."""
    hub = get_hub()
    feed = hub.feeds["ETH-USDT"]
    for i in range(count):
        hub.dispatch(
            {"type": "market.update", "market": "ETH-USDT", "seq": feed.seq + 1, "time": None, "bids": [], "asks": []}
            | {"trades": [{"id": i}]}
        )


async def subscribed_to_trades(gate: Gate) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(gate.wrap(application), "/ws/v1/", headers=ORIGIN)
    assert (await ws.connect())[0]
    await send(ws, op="subscribe", channels=["trades.ETH-USDT"])
    await frames_until(ws, on("subscribed"))
    hub = get_hub()
    while not (hub.feeds.get("ETH-USDT") and hub.feeds["ETH-USDT"].trades):
        await asyncio.sleep(0.01)
    return ws


def test_frames_wait_behind_a_slow_send_in_order(markets):
    async def scenario() -> None:
        gate = Gate()
        ws = await subscribed_to_trades(gate)
        gate.open.clear()  # the client stops reading
        publish_trades(5)
        assert await ws.receive_nothing(timeout=0.1)
        gate.open.set()
        frames = [await ws.receive_json_from() for _ in range(5)]
        assert [f["data"][0]["id"] for f in frames] == [0, 1, 2, 3, 4]
        publish_trades(1)  # and the connection is idle again
        assert (await ws.receive_json_from())["data"] == [{"id": 0}]
        await ws.disconnect()

    run(scenario)


def test_a_client_that_falls_behind_is_closed_with_4008(monkeypatch, markets):
    monkeypatch.setattr(consumers, "OUTBOX_SIZE", 3)

    async def scenario() -> None:
        gate = Gate()
        ws = await subscribed_to_trades(gate)
        gate.open.clear()
        publish_trades(5)  # one send waits, three queue, the fifth is one too many
        gate.open.set()
        sent = await ws.receive_output(timeout=5)
        assert json.loads(sent["text"])["data"] == [{"id": 0}]  # the send that was waiting ends
        output = await ws.receive_output(timeout=5)
        assert output == {"type": "websocket.close", "code": consumers.SLOW_CONSUMER}  # the queued ones dropped

    run(scenario)
