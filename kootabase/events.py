"""The one way to send anything to a queue or a socket: after the data is committed.

Inside an atomic block the send is deferred with ``transaction.on_commit`` and dropped
if the transaction rolls back; outside one it happens at once. Every Celery dispatch and
every Channels broadcast in the project goes through these two functions.

Broadcasts to a shared channel layer (Redis) leave through one publisher thread per
process: the commit hook only puts the message on a queue, and the thread's event loop
sends messages one after another, in order, over connections it keeps. (Calling
``async_to_sync`` per message would start an event loop — and open Redis connections —
for each one, which costs more than the transaction that produced it.) The in-process
layer of the embedded setup lives on the web server's event loop, so there the message
is handed to that loop directly.

Groups named ``market.<symbol>`` (a matcher's batches, read by every web process's
market-data hub) travel over their own channel layer, ``MARKET_DATA_LAYER`` (Redis
Pub/Sub in production: the hub receives them without a round trip per message, where the
default layer takes four); every other group over the default layer.

A broadcast is a notification, not a record: the data is already committed, and a client
that misses a message resynchronises (depth carries a gap-free sequence number). If the
channel layer is unreachable, messages are logged and dropped, never retried into the
past, and a full queue drops the newest.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from asgiref.sync import async_to_sync
from celery import Task
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

PUBLISHER_QUEUE_LIMIT = 100_000
MARKET_DATA_LAYER = "marketdata"  # settings.CHANNEL_LAYERS


def user_group(user_id: int) -> str:
    """The Channels group of one user's private events (each of their sockets joins it)."""
    return f"user.{user_id}"


def enqueue_after_commit(task: Task, *args: Any, **kwargs: Any) -> None:
    """Queue ``task`` with the given arguments once the current transaction commits."""
    transaction.on_commit(lambda: task.apply_async(args=args, kwargs=kwargs))


def broadcast_after_commit(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to a Channels group once the current transaction commits."""
    transaction.on_commit(lambda: _send(group, message))


def layer_of(group: str) -> str:
    """The channel layer (alias) that carries ``group``."""
    return MARKET_DATA_LAYER if group.startswith("market.") else DEFAULT_CHANNEL_LAYER


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer(layer_of(group))
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        async_to_sync(layer.group_send)(group, message)
    else:
        _publisher.submit(layer, group, message)


class _Publisher:
    """A daemon thread with its own event loop that sends queued broadcasts in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Any, str, dict[str, Any]]] | None = None

    def submit(self, layer: Any, group: str, message: dict[str, Any]) -> None:
        loop, queue = self._ensure_started()
        loop.call_soon_threadsafe(self._put, queue, (layer, group, message))

    @staticmethod
    def _put(queue: asyncio.Queue, item: tuple[Any, str, dict[str, Any]]) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            logger.warning("broadcast queue full: dropped a message to %s", item[1])

    def _ensure_started(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue]:
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                ready = threading.Event()
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._run, args=(self._loop, ready), name="broadcasts", daemon=True).start()
                ready.wait()
            assert self._queue is not None
            return self._loop, self._queue

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._queue = asyncio.Queue(maxsize=PUBLISHER_QUEUE_LIMIT)
        loop.call_soon(ready.set)
        loop.run_until_complete(self._drain(self._queue))

    @staticmethod
    async def _drain(queue: asyncio.Queue) -> None:
        while True:
            layer, group, message = await queue.get()
            try:
                await layer.group_send(group, message)
            except Exception:  # a notification: the data is committed whatever happens here
                logger.exception("broadcast to %s failed; dropped", group)
            finally:
                queue.task_done()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued broadcast has been sent (for orderly shutdown and tests)."""
        with self._lock:
            loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return True

        try:
            asyncio.run_coroutine_threadsafe(queue.join(), loop).result(timeout)
        except TimeoutError:
            return False
        return True


_publisher = _Publisher()


def broadcasts_flush(timeout: float = 5.0) -> bool:
    """Block until this process's queued broadcasts have been handed to the channel layer."""
    return _publisher.flush(timeout)
