"""Embedded mode: the ASGI lifespan starts the matchers inside the web process, and their
events reach that process's sockets through the in-memory channel layer."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.testing.websocket import WebsocketCommunicator

from kootabase.asgi import application
from kootabase.management.commands.run_embedded import background_processes
from marketdata.tests.conftest import place

pytestmark = pytest.mark.django_db(transaction=True)


def test_lifespan_runs_the_matchers_in_process(settings, alice_client, bob_client):
    settings.REDIS_URL = ""

    # Placed before the matchers start: the test database is SQLite in shared-cache memory,
    # where a second writer fails at once instead of waiting (a file database waits).
    place(alice_client, side="sell", price="2000", quantity="1")
    place(bob_client, side="buy", price="2000", quantity="1")

    async def scenario() -> None:
        ws = WebsocketCommunicator(application, "/ws/v1/", headers=[(b"origin", b"http://127.0.0.1")])
        assert (await ws.connect())[0]
        await ws.send_to(text_data=json.dumps({"op": "subscribe", "channels": ["trades.ETH-USDT"]}))
        assert (await ws.receive_json_from())["op"] == "subscribed"
        lifespan = ApplicationCommunicator(application, {"type": "lifespan", "asgi": {"version": "3.0"}})
        await lifespan.send_input({"type": "lifespan.startup"})
        assert (await lifespan.receive_output(timeout=10))["type"] == "lifespan.startup.complete"
        frame = await ws.receive_json_from(timeout=10)  # the test runs no matcher itself
        assert (frame["channel"], frame["data"][0]["price"]) == ("trades.ETH-USDT", "2000")
        await ws.disconnect()
        await lifespan.send_input({"type": "lifespan.shutdown"})
        assert (await lifespan.receive_output(timeout=10))["type"] == "lifespan.shutdown.complete"

    async_to_sync(scenario)()


def test_run_embedded_starts_no_matcher_process_without_redis(settings, markets):
    settings.REDIS_URL = ""
    assert "matcher" not in background_processes()
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert "matcher" in background_processes()


def test_one_matcher_thread_owns_every_market(settings, markets):
    """A swap across two markets needs both books in one matcher (docs/orders.md, "Swap")."""
    import asyncio

    from channels.db import database_sync_to_async

    from marketdata.embedded import EmbeddedMatchers
    from orders.models import MatcherState

    settings.REDIS_URL = ""

    async def scenario() -> None:
        matchers = EmbeddedMatchers()
        await matchers.start()
        try:
            assert len(matchers.tasks) == 1
            assert sorted(matchers.symbols) == ["BTC-USDT", "ETH-USDT"]
            started = database_sync_to_async(lambda: MatcherState.objects.filter(epoch__gt=0).count())
            for _ in range(100):
                if await started() == 2:
                    break
                await asyncio.sleep(0.05)
            assert await started() == 2
        finally:
            await matchers.stop()

    async_to_sync(scenario)()


def test_matchers_that_fail_to_start_are_started_again(settings, markets, monkeypatch, caplog):
    """A start-up failure other than a lock held elsewhere (here a market that does not
    exist yet) is logged, and the matchers are started again until they run."""
    import threading
    import time

    from django.db import OperationalError

    from marketdata.embedded import EmbeddedMatchers
    from orders.models import MatcherState

    monkeypatch.setattr("marketdata.embedded.RESTART_DELAY", 0.05)
    matchers = EmbeddedMatchers()
    thread = threading.Thread(target=matchers._run, args=(["ETH-BTC", "ETH-USDT"],))
    thread.start()
    try:
        for _ in range(200):
            if "starting them again" in caplog.text:
                break
            time.sleep(0.05)
        assert "starting them again" in caplog.text and thread.is_alive()
        eth_usdt = markets["ETH-USDT"]
        eth_usdt.pk, eth_usdt.symbol, eth_usdt.quote = None, "ETH-BTC", markets["BTC-USDT"].base
        for _ in range(20):  # the in-memory test database refuses a write while the thread reads
            try:
                eth_usdt.save()
                break
            except OperationalError:
                time.sleep(0.05)
        for _ in range(200):
            if MatcherState.objects.filter(market__symbol__in=["ETH-BTC", "ETH-USDT"], epoch__gt=0).count() == 2:
                break
            time.sleep(0.05)
        assert set(MatcherState.objects.filter(epoch__gt=0).values_list("market__symbol", flat=True)) >= {
            "ETH-BTC",
            "ETH-USDT",
        }
    finally:
        matchers.stopping.set()
        thread.join(10)
    assert not thread.is_alive()
