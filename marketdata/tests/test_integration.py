"""End to end over real servers: two uvicorn processes on the test database, Redis as the
channel layer, real WebSocket clients, orders placed through REST and the real matcher.

Needs MariaDB (the servers share the test database) and Redis: CI's second pass."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection
from websockets.sync.client import ClientConnection, connect

from accounts.services import tokens_issue
from marketdata.tests.conftest import D, drain, early_in_a_minute
from orders.models import Trade

pytestmark = [pytest.mark.redis, pytest.mark.mariadb, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def servers(markets, tmp_path) -> Iterator[list[str]]:
    """Two ASGI server processes on the test database and the test's Redis."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kootabase.settings_test",
        "DATABASE_URL": f"mysql://{db['USER']}@{db['HOST']}:{db['PORT'] or 3306}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "KOOTABASE_VAR_DIR": str(tmp_path),
        "SECRET_KEY": settings.SECRET_KEY,
        "API_KEY_ENCRYPTION_KEY": ",".join(settings.API_KEY_ENCRYPTION_KEYS),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    procs, bases = [], []
    for _ in range(2):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "kootabase.asgi:application",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
            )
        )
        bases.append(f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        for proc, base in zip(procs, bases, strict=True):
            while True:
                assert proc.poll() is None, "the server exited"
                try:
                    if httpx.get(f"http://{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


class Client:
    """A WebSocket client that keeps every frame it reads."""

    def __init__(self, base: str) -> None:
        self.ws: ClientConnection = connect(f"ws://{base}/ws/v1/", origin="http://127.0.0.1").__enter__()
        self.frames: list[dict] = []

    def send(self, **message) -> None:
        self.ws.send(json.dumps(message))

    def until(self, match, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no matching frame among {self.frames[-20:]}"
            frame = json.loads(self.ws.recv(timeout=left))
            self.frames.append(frame)
            if match(frame):
                return frame

    def close(self) -> None:
        self.ws.close()


def rest(base: str, method: str, path: str, token: str | None = None, body: dict | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.request(method, f"http://{base}/api/v1{path}", json=body, headers=headers, timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def order(base: str, token: str, side: str, price: str, quantity: str) -> dict:
    body = {"market": "ETH-USDT", "type": "limit", "side": side, "price": price, "quantity": quantity}
    return rest(base, "POST", "/orders", token, body)


class Book:
    def __init__(self, snapshot: dict) -> None:
        self.seq = snapshot["seq"]
        self.bids, self.asks = dict(snapshot["bids"]), dict(snapshot["asks"])

    def apply(self, diff: dict) -> None:
        if diff["last_seq"] <= self.seq:
            return
        assert diff["first_seq"] <= self.seq + 1, f"gap: {self.seq} then {diff['first_seq']}"
        for levels, book in ((diff["bids"], self.bids), (diff["asks"], self.asks)):
            for price, qty in levels:
                if qty == "0":
                    book.pop(price, None)
                else:
                    book[price] = qty
        self.seq = diff["last_seq"]

    def matches(self, depth: dict) -> bool:
        return (self.seq, self.bids, self.asks) == (depth["seq"], dict(depth["bids"]), dict(depth["asks"]))


def follow(client: Client, book: Book, target_seq: int) -> None:
    while book.seq < target_seq:
        frame = client.until(lambda f: f.get("channel") == "depth.ETH-USDT")
        if frame["op"] == "snapshot":
            book.__init__(frame["data"])
        else:
            book.apply(frame["data"])


def test_orders_through_rest_reach_the_sockets_of_every_server(servers, alice, bob):
    one, two = servers
    alice_token, bob_token = tokens_issue(user=alice)["access"], tokens_issue(user=bob)["access"]
    a, b = Client(one), Client(two)
    for client, token in ((a, alice_token), (b, bob_token)):
        client.send(op="auth", token=token)
        assert client.until(lambda f: True)["op"] == "authenticated"
    a.send(
        op="subscribe",
        channels=[
            "depth.ETH-USDT",
            "trades.ETH-USDT",
            "ticker.ETH-USDT",
            "candles.1m.ETH-USDT",
            "orders",
            "trades",
            "balances",
        ],
    )
    b.send(op="subscribe", channels=["depth.ETH-USDT", "orders", "trades", "balances"])
    books = {}
    for name, client in (("a", a), ("b", b)):
        snapshot = client.until(lambda f: f.get("op") == "snapshot" and f["channel"] == "depth.ETH-USDT")
        books[name] = Book(snapshot["data"])

    early_in_a_minute()
    sells = [order(one, alice_token, "sell", p, q) for p, q in (("2001", "1"), ("2002", "2"), ("2003", "1"))]
    buys = [order(one, alice_token, "buy", p, q) for p, q in (("1999", "1"), ("1998", "2"))]
    drain()
    taker = order(two, bob_token, "buy", "2002", "1.5")
    drain()
    taker2 = order(two, bob_token, "sell", "1999", "0.25")
    drain()

    depth = rest(one, "GET", "/markets/ETH-USDT/depth?limit=5000")
    assert depth == rest(two, "GET", "/markets/ETH-USDT/depth?limit=5000")
    for name, client in (("a", a), ("b", b)):
        follow(client, books[name], depth["seq"])
        assert books[name].matches(depth), name

    trades = list(Trade.objects.order_by("trade_no"))
    assert [(t.price, t.quantity) for t in trades] == [(D(2001), D(1)), (D(2002), D("0.5")), (D(1999), D("0.25"))]
    seen: list[dict] = [t for f in a.frames if f.get("channel") == "trades.ETH-USDT" for t in f["data"]]
    while len(seen) < 3:
        seen.extend(a.until(lambda f: f.get("channel") == "trades.ETH-USDT")["data"])
    assert [(t["id"], D(t["price"]), D(t["quantity"])) for t in seen] == [
        (t.trade_no, t.price, t.quantity) for t in trades
    ]

    def latest(channel: str, ready) -> dict:
        for frame in reversed(a.frames):
            if frame.get("channel") == channel and frame["op"] == "update" and ready(frame["data"]):
                return frame["data"]
        return a.until(lambda f: f.get("channel") == channel and f["op"] == "update" and ready(f["data"]))["data"]

    ticker = latest("ticker.ETH-USDT", lambda d: d["trade_count"] == 3)
    prices = [t.price for t in trades]
    assert (D(ticker["open"]), D(ticker["high"]), D(ticker["low"]), D(ticker["last"])) == (
        prices[0],
        max(prices),
        min(prices),
        prices[-1],
    )
    assert D(ticker["base_volume"]) == sum(t.quantity for t in trades)
    assert D(ticker["quote_volume"]) == sum(t.price * t.quantity for t in trades)
    assert (ticker["bid"], ticker["ask"]) == (depth["bids"][0][0], depth["asks"][0][0])
    candle = latest(
        "candles.1m.ETH-USDT",
        lambda d: (
            d is not None
            and d["trade_count"]
            == sum(
                1
                for t in trades
                if t.created_at.replace(second=0, microsecond=0)
                == trades[-1].created_at.replace(second=0, microsecond=0)
            )
        ),
    )
    last_minute = [
        t
        for t in trades
        if t.created_at.replace(second=0, microsecond=0) == trades[-1].created_at.replace(second=0, microsecond=0)
    ]
    assert (D(candle["open"]), D(candle["close"]), D(candle["base_volume"])) == (
        last_minute[0].price,
        last_minute[-1].price,
        sum(t.quantity for t in last_minute),
    )

    # Private events: each user sees only their own.
    time.sleep(0.5)
    for client in (a, b):
        while True:
            try:
                client.frames.append(json.loads(client.ws.recv(timeout=0.3)))
            except TimeoutError:
                break
    a_orders = {f["data"]["id"] for f in a.frames if f.get("channel") == "orders"}
    b_orders = {f["data"]["id"] for f in b.frames if f.get("channel") == "orders"}
    assert a_orders == {o["id"] for o in sells + buys}
    assert b_orders == {taker["id"], taker2["id"]}
    b_fills = {f["data"]["order_id"] for f in b.frames if f.get("channel") == "trades"}
    assert b_fills == {taker["id"], taker2["id"]}
    assert all(f["data"]["order_id"] in a_orders for f in a.frames if f.get("channel") == "trades")
    assert [f for f in b.frames if f.get("channel") == "balances"]

    # A client that drops and reconnects resyncs from a fresh snapshot.
    b.close()
    order(one, alice_token, "sell", "2004", "3")
    drain()
    b = Client(two)
    b.send(op="subscribe", channels=["depth.ETH-USDT"])
    book = Book(b.until(lambda f: f.get("op") == "snapshot")["data"])
    order(one, alice_token, "buy", "1997", "1")
    drain()
    depth = rest(two, "GET", "/markets/ETH-USDT/depth?limit=5000")
    follow(b, book, depth["seq"])
    assert book.matches(depth)
    assert ["2004", "3"] in depth["asks"] and ["1997", "1"] in depth["bids"]
    a.close()
    b.close()


def test_a_client_that_misses_nothing_sees_a_continuous_sequence(servers, alice, bob):
    """Many batches in a row over one server: the diffs stay gap-free and coalesce."""
    (one, _), token = servers, tokens_issue(user=alice)["access"]
    c = Client(one)
    c.send(op="subscribe", channels=["depth.ETH-USDT"])
    book = Book(c.until(lambda f: f.get("op") == "snapshot")["data"])
    for i in range(30):
        order(one, token, "sell" if i % 2 else "buy", str(Decimal(2100 + i) if i % 2 else Decimal(1900 - i)), "1")
        drain()
    depth = rest(one, "GET", "/markets/ETH-USDT/depth?limit=5000")
    follow(c, book, depth["seq"])
    assert book.matches(depth)
    c.close()
