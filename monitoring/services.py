"""Monitoring writes: request metrics, heartbeats and connection counts into the shared
store (``monitoring.store``), and the per-minute order sample into the database."""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
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
_paused_until = 0.0


def request_record(*, method: str, status: int, route: str, duration: float, at: float | None = None) -> None:
    """Count one answered HTTP request. Never raises: a store that is down costs the
    metrics, not the request (and is not retried for ``RECORD_PAUSE_AFTER_FAILURE``)."""
    global _paused_until
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
    try:
        get_store().increment(counts, expire={minute: MINUTE_TTL})
    except Exception:  # metrics must never fail a request
        _paused_until = at + RECORD_PAUSE_AFTER_FAILURE
        logger.warning("monitoring: cannot record request metrics; pausing", exc_info=True)


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
