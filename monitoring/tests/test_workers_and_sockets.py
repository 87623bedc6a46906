"""Heartbeats of a real Celery worker, WebSocket connections counted per process and
summed, and the queue lengths of the embedded file broker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from asgiref.sync import async_to_sync
from celery.contrib.testing.worker import start_worker
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from kombu import Connection

from kootabase.asgi import application
from kootabase.celery import QUEUES
from kootabase.celery import app as celery_app
from monitoring import selectors, websocket, workers
from monitoring.services import websocket_count_publish

ORIGIN = [(b"origin", b"http://127.0.0.1")]


@contextmanager
def broker_read(url: str, options: dict | None = None) -> Iterator[None]:
    """Point the app's reading connections at another broker for a while."""
    conf = celery_app.conf
    saved = {name: conf.get(name) for name in ("broker_read_url", "broker_transport_options")}
    conf.update(broker_read_url=url, **({} if options is None else {"broker_transport_options": options}))
    try:
        yield
    finally:
        conf.update(saved)


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    workers._last_sent.clear()
    yield
    workers._last_sent.clear()


def test_a_running_worker_records_its_heartbeat():
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        queues=list(QUEUES),
        shutdown_timeout=10,
        without_heartbeat=False,  # the worker's event heartbeats, as in production
    ) as worker:
        # Started means its first heartbeat ("worker-online") has been sent.
        found = {w.hostname: w for w in selectors.celery_workers(now=timezone.now())}
        assert worker.hostname in found
        record = found[worker.hostname]
        assert record.alive and set(record.queues) == set(QUEUES)


@pytest.mark.django_db(transaction=True)
def test_websocket_connections_are_counted_per_process_and_summed():
    async def scenario() -> list[tuple[int, int]]:
        seen = []
        sockets = [WebsocketCommunicator(application, "/ws/v1/", headers=ORIGIN) for _ in range(3)]
        for ws in sockets:
            connected, _ = await ws.connect()
            assert connected
        await websocket.publish()
        seen.append(_count())
        await sockets[0].disconnect()
        await websocket.publish()
        seen.append(_count())
        for ws in sockets[1:]:
            await ws.disconnect()
        await websocket.publish()
        seen.append(_count())
        return seen

    def _count() -> tuple[int, int]:
        count = selectors.websocket_connections()
        return count.connections, count.processes

    assert async_to_sync(scenario)() == [(3, 1), (2, 1), (0, 1)]
    # Another web process (another pod) publishes its own count: the dashboard sums them.
    websocket_count_publish(process="web-2:41", connections=5)
    assert _count() == (5, 2)


def test_queue_lengths_of_the_embedded_file_broker(tmp_path):
    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    options = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }
    with Connection("filesystem://", transport_options=options) as conn:
        orders = conn.SimpleQueue("orders")
        for n in range(2):
            orders.put({"n": n})
        conn.SimpleQueue("blockchain").put({"n": 0})
        orders.close()
    assert len(list(folders["queue"].iterdir())) == 3  # one file per message
    with broker_read("filesystem://", options):
        assert selectors.celery_queue_lengths() == {"default": 0, "orders": 2, "matching": 0, "blockchain": 1}


def test_an_unreachable_broker_reads_as_unknown():
    with broker_read("redis://127.0.0.1:1/0"):
        assert selectors.celery_queue_lengths() == dict.fromkeys(QUEUES)
