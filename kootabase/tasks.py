"""Project-wide periodic tasks."""

from __future__ import annotations

import socket

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "kootabase:worker-heartbeat:{hostname}"


@shared_task(name="kootabase.tasks.heartbeat", ignore_result=True)
def heartbeat() -> str:
    """Record that a worker is alive; the back office reads these keys."""
    hostname = socket.gethostname()
    cache.set(HEARTBEAT_KEY.format(hostname=hostname), timezone.now().isoformat(), timeout=300)
    return hostname
