"""The one way to send anything to a queue or a socket: after the data is committed.

Inside an atomic block the send is deferred with ``transaction.on_commit`` and dropped
if the transaction rolls back; outside one it happens at once. Every Celery dispatch and
every Channels broadcast in the project goes through these two functions.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from celery import Task
from channels.layers import get_channel_layer
from django.db import transaction


def enqueue_after_commit(task: Task, *args: Any, **kwargs: Any) -> None:
    """Queue ``task`` with the given arguments once the current transaction commits."""
    transaction.on_commit(lambda: task.apply_async(args=args, kwargs=kwargs))


def broadcast_after_commit(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to a Channels group once the current transaction commits."""

    def send() -> None:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(group, message)

    transaction.on_commit(send)
