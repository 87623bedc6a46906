"""Monitoring tasks: thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task

from monitoring.services import order_sample_take


@shared_task(name="monitoring.tasks.order_sample", ignore_result=True)
def order_sample() -> dict:
    """Take this minute's order sample (every minute, on the default queue)."""
    sample = order_sample_take()
    return {"minute": sample.minute.isoformat(), "orders": sample.orders}
