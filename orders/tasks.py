"""Order tasks (the ``orders`` queue): thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task

from orders.swap import swaps_fail_overdue as _swaps_fail_overdue


@shared_task(name="orders.tasks.swaps_fail_overdue", ignore_result=True)
def swaps_fail_overdue() -> int:
    """Fail the swaps no matcher executed by their deadline, and release their holds
    (periodic, on the orders queue)."""
    return _swaps_fail_overdue()
