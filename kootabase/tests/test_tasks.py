"""Tasks travel through a real broker to a real worker, and only after commit."""

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.cache import cache
from django.db import transaction

from kootabase.celery import QUEUES
from kootabase.celery import app as celery_app
from kootabase.events import enqueue_after_commit
from kootabase.tasks import HEARTBEAT_KEY, heartbeat


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("orders.tasks.anything", "orders"),
        ("matching.tasks.anything", "matching"),
        ("blockchain.tasks.anything", "blockchain"),
        ("kootabase.tasks.heartbeat", "default"),
        ("wallets.tasks.anything", "default"),
    ],
)
def test_tasks_route_to_their_queue_only(task_name, queue):
    route = celery_app.amqp.router.route({}, task_name)
    assert route["queue"].name == queue
    assert route["queue"].routing_key == queue
    bound = [q.name for q in celery_app.conf.task_queues if q.routing_key == route["queue"].routing_key]
    assert bound == [queue]
    assert set(QUEUES) == {q.name for q in celery_app.conf.task_queues}


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@contextmanager
def _worker() -> Iterator[str]:
    """A real worker in this process, past its start-up: it has run one task. Until then
    its thread may hold the in-memory test database, and a transaction begun meanwhile
    (SQLite's ``BEGIN IMMEDIATE``) would find the database locked. Yields the cache key
    its heartbeats write, cleared."""
    key = HEARTBEAT_KEY.format(hostname=socket.gethostname())
    with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=list(QUEUES), shutdown_timeout=10):
        heartbeat.delay()
        assert _wait_for(lambda: cache.get(key) is not None)
        cache.delete(key)
        yield key


@pytest.mark.django_db(transaction=True)
def test_task_reaches_a_real_worker_only_after_commit():
    with _worker() as key:
        with transaction.atomic():
            enqueue_after_commit(heartbeat)
            time.sleep(0.3)
            assert cache.get(key) is None  # not sent before commit
        assert _wait_for(lambda: cache.get(key) is not None)


@pytest.mark.django_db(transaction=True)
def test_rolled_back_work_sends_nothing():
    with _worker() as key:
        try:
            with transaction.atomic():
                enqueue_after_commit(heartbeat)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        time.sleep(0.5)
        assert cache.get(key) is None
