"""Request counters and latency histograms: counted by the middleware, in both the sync
and the async (ASGI) handler, added up across processes, and harmless when the store is down."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from django.core.handlers.asgi import ASGIHandler
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from kootabase.asgi_handler import PooledASGIHandler
from monitoring import selectors, services
from monitoring.services import LATENCY_BUCKETS, request_record
from monitoring.store import RedisStore, SqliteStore, get_store

TOKEN = "a-long-random-metrics-token"


@pytest.fixture(autouse=True)
def _recording_on() -> Iterator[None]:
    services._paused_until = 0.0
    yield
    services._paused_until = 0.0


def scrape(client: Client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


@pytest.mark.django_db
@pytest.mark.urls("monitoring.tests.urls")
def test_requests_errors_and_latency_are_counted(settings):
    settings.METRICS_TOKEN = TOKEN
    client = Client(raise_request_exception=False)
    assert [client.get("/healthz").status_code for _ in range(2)] == [200, 200]
    assert client.get("/no-such-path").status_code == 404
    assert client.post("/healthz").status_code == 405
    assert client.get("/test/broken/7").status_code == 500

    totals = selectors.http_totals()
    assert totals.requests == {("GET", "200"): 2, ("GET", "404"): 1, ("POST", "405"): 1, ("GET", "500"): 1}
    assert set(totals.latency) == {"healthz", "unmatched", "test/broken/<int:number>"}
    healthz = totals.latency["healthz"]
    assert healthz.count == 3 and healthz.sum_seconds > 0
    assert healthz.buckets == sorted(healthz.buckets) and len(healthz.buckets) == len(LATENCY_BUCKETS) + 1

    minutes = selectors.http_per_minute(now=timezone.now() + timedelta(minutes=1))
    assert sum(m.requests for m in minutes) == 5
    assert (sum(m.errors_4xx for m in minutes), sum(m.errors_5xx for m in minutes)) == (2, 1)
    assert all(m.latency_avg_ms is not None for m in minutes if m.requests)

    families = scrape(client)  # the scrape itself is counted after it is answered
    requests = {(s.labels["method"], s.labels["status"]): s.value for s in families["kootabase_http_requests"].samples}
    assert requests == {("GET", "200"): 2, ("GET", "404"): 1, ("POST", "405"): 1, ("GET", "500"): 1}
    histogram = [
        s for s in families["kootabase_http_request_duration_seconds"].samples if s.labels["route"] == "healthz"
    ]
    by_name = {}
    for sample in histogram:
        by_name.setdefault(sample.name, []).append(sample)
    assert [s.value for s in by_name["kootabase_http_request_duration_seconds_count"]] == [3]
    inf = [s for s in by_name["kootabase_http_request_duration_seconds_bucket"] if s.labels["le"] == "+Inf"]
    assert [s.value for s in inf] == [3]
    assert selectors.http_totals().requests[("GET", "200")] == 3  # now with the scrape


@pytest.mark.parametrize("handler", [PooledASGIHandler, ASGIHandler], ids=["project", "django"])
def test_the_asgi_handlers_count_too(handler, db):
    """The project's handler (one synchronous chain per request thread) and Django's own
    (an asynchronous chain: the middleware's async path)."""
    app = handler()

    async def requests() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            responses = await asyncio.gather(*(client.get("/healthz") for _ in range(4)), client.get("/nothing-here"))
        return [response.status_code for response in responses]

    assert asyncio.run(requests()) == [200, 200, 200, 200, 404]
    totals = selectors.http_totals()
    assert totals.requests == {("GET", "200"): 4, ("GET", "404"): 1}
    assert totals.latency["healthz"].count == 4


def _in_children(children: int, requests: int) -> None:
    """Record ``requests`` requests in each of ``children`` forked processes (each reopens
    the store after the fork, as a web worker does)."""
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                for _ in range(requests):
                    request_record(method="GET", status=503, route="readyz", duration=0.2)
                services.request_counts_flush()  # what its flushing thread does within a second
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def _check_sum_across_processes() -> None:
    for _ in range(5):  # pending in this process when the children fork: theirs to leave alone
        request_record(method="GET", status=200, route="readyz", duration=0.001)
    _in_children(2, 25)
    for _ in range(5):
        request_record(method="GET", status=200, route="readyz", duration=0.001)
    totals = selectors.http_totals()
    assert totals.requests == {("GET", "503"): 50, ("GET", "200"): 10}
    readyz = totals.latency["readyz"]
    assert readyz.count == 60
    assert readyz.buckets[LATENCY_BUCKETS.index(0.005)] == 10  # the parent's fast ones
    assert readyz.buckets[LATENCY_BUCKETS.index(0.25)] == 60  # 0.2 s falls in the 0.25 bucket
    assert readyz.sum_seconds == pytest.approx(50 * 0.2 + 10 * 0.001)


def test_counters_add_up_across_processes_in_the_embedded_file(settings, tmp_path):
    settings.MONITORING_REDIS_URL = ""
    settings.MONITORING_STORE_PATH = str(tmp_path / "monitoring.sqlite3")
    assert isinstance(get_store(), SqliteStore)
    _check_sum_across_processes()


def test_a_child_forked_while_another_thread_writes_to_the_store_does_not_hang(settings, tmp_path):
    """A fork copies a lock held by another thread (the flushing thread, in the middle of a
    write) as held, with no thread left in the child to release it: the child's store and
    the choice of store start unlocked."""
    import monitoring.store

    settings.MONITORING_REDIS_URL = ""
    settings.MONITORING_STORE_PATH = str(tmp_path / "monitoring.sqlite3")
    store = get_store()
    assert isinstance(store, SqliteStore)
    held, release = threading.Event(), threading.Event()

    def writing() -> None:  # a write under way in another thread: both locks held
        with monitoring.store._store_lock, store._lock:
            held.set()
            release.wait(10)

    writer = threading.Thread(target=writing)
    writer.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                request_record(method="GET", status=503, route="readyz", duration=0.2)
                services.request_counts_flush()
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 10
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child waited for a lock only its parent's thread could release")
        assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        release.set()
        writer.join()
    assert selectors.http_totals().requests == {("GET", "503"): 1}


@pytest.mark.redis
def test_counters_add_up_across_processes_in_redis(settings):
    settings.MONITORING_REDIS_URL = settings.REDIS_URL
    assert isinstance(get_store(), RedisStore)
    get_store().clear()
    try:
        _check_sum_across_processes()
    finally:
        get_store().clear()


def test_presence_records_expire(settings, tmp_path):
    settings.MONITORING_REDIS_URL = ""
    settings.MONITORING_STORE_PATH = str(tmp_path / "monitoring.sqlite3")
    store, other_process = get_store(), SqliteStore(str(tmp_path / "monitoring.sqlite3"))
    store.presence_set("group", "live", {"n": 1}, ttl=60)
    store.presence_set("group", "gone", {"n": 2}, ttl=-1)  # already expired
    assert other_process.presence("group") == {"live": {"n": 1}}


@pytest.mark.django_db
def test_a_store_that_is_down_costs_the_metrics_not_the_request(settings, client):
    settings.MONITORING_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert client.get("/healthz").status_code == 200
    services.request_counts_flush()  # the write fails, and says so only in the log
    assert services._paused_until > 0  # and the next requests do not count for a while
    assert client.get("/healthz").status_code == 200
    assert not services._pending.counts


def test_latency_includes_the_wait_for_a_free_request_thread(settings, db):
    settings.ROOT_URLCONF = "kootabase.tests.test_asgi_handler"  # its /slow view sleeps 0.05 s
    settings.WEB_MAX_CONCURRENT_REQUESTS = 1
    app = PooledASGIHandler()

    async def requests() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await asyncio.gather(*(client.get("/slow") for _ in range(3)))

    asyncio.run(requests())
    slow = selectors.http_totals().latency["slow"]
    assert slow.count == 3
    # One thread: the three ran one after another, so together they waited at least
    # 0 + 0.05 + 0.1 s on top of their own 3 x 0.05 s.
    assert slow.sum_seconds >= 0.3


def test_requests_are_written_together_by_the_process_not_one_by_one(settings, tmp_path):
    """A request counts in memory; the process writes its counts in one increment, by
    its own thread within about a second, or first thing when this process reads them."""
    settings.MONITORING_REDIS_URL = ""
    settings.MONITORING_STORE_PATH = str(tmp_path / "monitoring.sqlite3")
    store = get_store()
    writes = []
    increment = store.increment
    store.increment = lambda counts, **kw: (writes.append(counts), increment(counts, **kw))[-1]
    try:
        for _ in range(30):
            request_record(method="GET", status=200, route="healthz", duration=0.002)
        assert selectors.http_totals().requests == {("GET", "200"): 30}
        assert 1 <= len(writes) <= 2  # two if the process's thread woke in the middle
        written = len(writes)
        for _ in range(3):
            request_record(method="POST", status=201, route="api/v1/orders", duration=0.02)
        other_process = SqliteStore(settings.MONITORING_STORE_PATH)  # reads without writing ours
        for _ in range(50):
            if other_process.counters([services.HTTP_REQUESTS])[services.HTTP_REQUESTS].get("POST 201"):
                break
            time.sleep(0.1)
        assert other_process.counters([services.HTTP_REQUESTS])[services.HTTP_REQUESTS] == {
            "GET 200": 30,
            "POST 201": 3,
        }
        assert written < len(writes) <= written + 2
    finally:
        store.increment = increment
