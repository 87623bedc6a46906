"""Celery worker heartbeats for the dashboard.

A worker sends a ``worker-heartbeat`` event every two seconds (unless started with
``--without-heartbeat``) and Celery fires the ``heartbeat_sent`` signal with it, in the
worker's main process, whatever its pool. Each worker writes its record, at most every
``HEARTBEAT_EVERY`` seconds, into the shared store's ``workers`` group: its hostname, pid,
the queues it consumes and the time. The dashboard shows a worker as alive while its
last record is younger than ``monitoring.selectors.WORKER_ALIVE_WITHIN``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery.signals import heartbeat_sent

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY = 10.0  # seconds between two records of one worker
_last_sent: dict[str, float] = {}


def _queues(sender: Any) -> list[str]:
    app = getattr(getattr(sender, "eventer", None), "app", None)
    if app is None:
        return []
    return list(app.amqp.queues.consume_from or app.amqp.queues)


def on_heartbeat(sender: Any = None, **_: Any) -> None:
    """``heartbeat_sent``: ``sender`` is the worker's ``Heart`` (its ``eventer`` knows the hostname)."""
    from monitoring.services import worker_heartbeat

    hostname = getattr(getattr(sender, "eventer", None), "hostname", None)
    if not hostname:
        return
    now = time.monotonic()
    if now - _last_sent.get(hostname, -HEARTBEAT_EVERY) < HEARTBEAT_EVERY:
        return
    _last_sent[hostname] = now
    try:
        worker_heartbeat(hostname=hostname, pid=os.getpid(), queues=_queues(sender))
    except Exception:  # a monitoring failure must not disturb the worker
        logger.warning("monitoring: cannot record the heartbeat of %s", hostname, exc_info=True)


def connect_signals() -> None:
    heartbeat_sent.connect(on_heartbeat, weak=False, dispatch_uid="monitoring.heartbeat")
