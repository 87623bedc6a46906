"""Monitoring writes: request metrics, heartbeats and connection counts into the shared
store (``monitoring.store``), and the per-minute order sample into the database."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from bisect import bisect_left
from collections import Counter
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring.models import OrderSample
from monitoring.store import get_store
from orders.models import Order

logger = logging.getLogger(__name__)

# Request latency histogram buckets, in seconds (the last bucket, +Inf, is implicit).
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MINUTE_TTL = 2 * 3600  # per-minute request totals are kept two hours
# Names of the counters in the store.
HTTP_REQUESTS = "http:requests"  # field "<method> <status>"
HTTP_DURATION_BUCKETS = "http:duration:buckets"  # field "<bucket index> <route>"
HTTP_DURATION_SUM = "http:duration:sum_us"  # field "<route>", microseconds
HTTP_MINUTE = "http:minute:{minute}"  # minute = unix time // 60; fields requests, 4xx, 5xx, duration_us

WORKERS = "workers"  # presence group: one record per Celery worker
WORKER_RECORD_TTL = 3600  # a worker that stopped is shown, as not alive, for an hour
WEBSOCKET = "websocket"  # presence group: one record per web process
WEBSOCKET_RECORD_TTL = 60  # a web process republishes its count well within this

SAMPLE_KEEP = timedelta(days=2)
SAMPLE_MAX_GAP = timedelta(hours=1)  # after a longer pause the next sample starts afresh

RECORD_PAUSE_AFTER_FAILURE = 10.0  # seconds without recording after the store failed
REQUEST_COUNTS_FLUSH_EVERY = 1.0  # seconds between a process's writes of its request counts
_paused_until = 0.0


class _RequestCounts:
    """This process's request counts not yet in the store. A request adds to them in
    memory; a thread writes them every ``REQUEST_COUNTS_FLUSH_EVERY`` in one increment
    (one Redis round trip a second, not one per request), and a reader of the totals in
    this process writes them first. Other processes' counts reach the store within that
    second. A forked child starts empty: what it inherited is its parent's to write."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.lock = threading.Lock()  # guards the counts
        self.flushing = threading.Lock()  # one write at a time, and none during a discard
        self.counts: dict[str, Counter[str]] = {}
        self.expire: dict[str, int] = {}
        self.thread: threading.Thread | None = None

    def add(self, counts: dict[str, dict[str, int]], expire: dict[str, int]) -> None:
        with self.lock:
            for name, fields in counts.items():
                self.counts.setdefault(name, Counter()).update(fields)
            self.expire.update(expire)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="request-counts", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(REQUEST_COUNTS_FLUSH_EVERY)
            request_counts_flush()

    def take(self) -> tuple[dict[str, Counter[str]], dict[str, int]]:
        with self.lock:
            counts, expire = self.counts, self.expire
            self.counts, self.expire = {}, {}
        return counts, expire


_pending = _RequestCounts()


def request_record(*, method: str, status: int, route: str, duration: float, at: float | None = None) -> None:
    """Count one answered HTTP request, in this process's pending counts (see
    ``_RequestCounts``). Never raises and never waits for the store: a store that is down
    costs the metrics, not the request."""
    at = time.time() if at is None else at
    if at < _paused_until:
        return
    method = method if method in HTTP_METHODS else "other"
    micros = max(round(duration * 1_000_000), 0)
    minute = HTTP_MINUTE.format(minute=int(at // 60))
    per_minute = {"requests": 1, "duration_us": micros}
    if 400 <= status < 500:
        per_minute["4xx"] = 1
    elif status >= 500:
        per_minute["5xx"] = 1
    counts = {
        HTTP_REQUESTS: {f"{method} {status}": 1},
        HTTP_DURATION_BUCKETS: {f"{bisect_left(LATENCY_BUCKETS, duration)} {route}": 1},
        HTTP_DURATION_SUM: {route: micros},
        minute: per_minute,
    }
    _pending.add(counts, {minute: MINUTE_TTL})


def request_counts_flush() -> None:
    """Write this process's pending request counts to the store. Never raises: if the
    store fails they are dropped, and recording pauses for ``RECORD_PAUSE_AFTER_FAILURE``."""
    global _paused_until
    with _pending.flushing:
        counts, expire = _pending.take()
        if not counts:
            return
        try:
            get_store().increment(counts, expire=expire)
        except Exception:  # metrics must never fail a request
            _paused_until = time.time() + RECORD_PAUSE_AFTER_FAILURE
            logger.warning("monitoring: cannot record request metrics; pausing", exc_info=True)


atexit.register(request_counts_flush)  # a process that stops writes what it has counted


def request_counts_discard() -> None:
    """Forget this process's pending request counts, once any write under way is done
    (tests, before they empty the store)."""
    with _pending.flushing:
        _pending.take()


def worker_heartbeat(*, hostname: str, pid: int, queues: list[str], at: datetime | None = None) -> None:
    """A Celery worker says it is alive (``monitoring.workers``)."""
    at = at or timezone.now()
    payload = {"pid": pid, "queues": sorted(queues), "at": at.isoformat()}
    get_store().presence_set(WORKERS, hostname, payload, ttl=WORKER_RECORD_TTL)


def websocket_count_publish(*, process: str, connections: int) -> None:
    """A web process says how many WebSocket connections it holds (``monitoring.websocket``)."""
    get_store().presence_set(WEBSOCKET, process, {"connections": connections}, ttl=WEBSOCKET_RECORD_TTL)


def order_sample_take(*, now: datetime | None = None) -> OrderSample:
    """Note the highest order id and count the orders placed since the previous sample.

    One sample per minute: a second call within the same minute returns the first. The
    count is a primary-key range scan of the orders placed since the previous sample; after
    a pause longer than ``SAMPLE_MAX_GAP`` nothing is counted and the sample is a new start.
    Samples older than ``SAMPLE_KEEP`` are deleted.
    """
    now = now or timezone.now()
    minute = now.replace(second=0, microsecond=0)
    existing = OrderSample.objects.filter(minute=minute).first()
    if existing is not None:
        return existing
    previous = OrderSample.objects.filter(minute__lt=minute).order_by("-minute").first()
    order_id_max = Order.objects.order_by("-id").values_list("id", flat=True).first() or 0
    orders = minutes = None
    if previous is not None and minute - previous.minute <= SAMPLE_MAX_GAP:
        orders = Order.objects.filter(id__gt=previous.order_id_max, id__lte=order_id_max).count()
        minutes = int((minute - previous.minute).total_seconds() // 60)
    try:
        with transaction.atomic():
            sample = OrderSample.objects.create(
                minute=minute, order_id_max=order_id_max, orders=orders, minutes=minutes
            )
    except IntegrityError:  # another process took this minute's sample first
        return OrderSample.objects.get(minute=minute)
    OrderSample.objects.filter(minute__lt=minute - SAMPLE_KEEP).delete()
    return sample
