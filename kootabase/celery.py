"""The Celery application: named queues, routing in one place, and the beat schedule.

Queues:
- ``default``: housekeeping (heartbeats, audits, notifications);
- ``orders``: order intake work that is not the matcher itself;
- ``matching``: the per-market matchers (one consumer per market, concurrency 1);
- ``blockchain``: deposit scanning, sweeping, withdrawal broadcasting.

Tasks are routed by the module they live in, so a task lands on its app's queue
without naming it at every call site.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kootabase.settings")

app = Celery("kootabase")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUES = ("default", "orders", "matching", "blockchain")
TASK_ROUTES = {
    "orders.tasks.*": {"queue": "orders"},
    "matching.tasks.*": {"queue": "matching"},
    "blockchain.tasks.*": {"queue": "blockchain"},
}
BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "kootabase.tasks.heartbeat", "schedule": 30.0},
    "ledger-audit": {"task": "wallets.tasks.ledger_audit", "schedule": 3600.0},
    "orders-swaps-fail-overdue": {"task": "orders.tasks.swaps_fail_overdue", "schedule": 30.0},
    # At the start of every minute, so a sample counts exactly the minute before it.
    "monitoring-order-sample": {"task": "monitoring.tasks.order_sample", "schedule": crontab()},
    "blockchain-scan-deposits": {"task": "blockchain.tasks.scan_deposits", "schedule": 5.0},
    "blockchain-process-withdrawals": {"task": "blockchain.tasks.process_withdrawals", "schedule": 5.0},
    "blockchain-sweep-deposits": {"task": "blockchain.tasks.sweep_deposits", "schedule": 60.0},
}

app.conf.update(
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
    task_default_exchange="default",
    task_default_routing_key="default",
    task_default_queue="default",
    task_routes=TASK_ROUTES,
    beat_schedule=BEAT_SCHEDULE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    broker_connection_retry_on_startup=True,
)
app.autodiscover_tasks()
