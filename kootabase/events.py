"""The one way to send anything to a queue or a socket: after the data is committed.

Inside an atomic block the send is deferred with ``transaction.on_commit`` and dropped
if the transaction rolls back; outside one it happens at once. Every Celery dispatch and
every Channels broadcast in the project goes through these two functions.

Broadcasts to a shared channel layer (Redis) leave through one publisher thread per
process: the commit hook only puts the message on a queue, and the thread's event loop
sends messages one after another, in order, over connections it keeps. A transaction
that announces many messages at once (a matcher's batch) queues them with
``broadcasts_after_commit``: one commit hook and one wake-up of the publisher for all. (Calling
``async_to_sync`` per message would start an event loop — and open Redis connections —
for each one, which costs more than the transaction that produced it.) The in-process
layer of the embedded setup lives on the web server's event loop, so there the message
is handed to that loop directly: the lifespan names the loop at start-up
(``in_memory_layer_home``), and a thread of any kind (a request's, the placement thread,
the matcher's) has its sends run there, in order, and waits for them. A thread that sends
to an asyncio queue of another loop directly is not seen by that loop until something
else wakes it.

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
import os
import threading
import time
from typing import Any

from asgiref.sync import async_to_sync
from celery import Task
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.db import transaction

logger = logging.getLogger(__name__)

PUBLISHER_QUEUE_LIMIT = 100_000
MARKET_DATA_LAYER = "marketdata"  # settings.CHANNEL_LAYERS

_in_memory_home: asyncio.AbstractEventLoop | None = None  # see in_memory_layer_home


def user_group(user_id: int) -> str:
    """The Channels group of one user's private events (each of their sockets joins it)."""
    return f"user.{user_id}"


def enqueue_after_commit(task: Task, *args: Any, **kwargs: Any) -> None:
    """Queue ``task`` with the given arguments once the current transaction commits."""
    transaction.on_commit(lambda: task.apply_async(args=args, kwargs=kwargs))


def broadcast_after_commit(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to a Channels group once the current transaction commits."""
    transaction.on_commit(lambda: _send(group, message))


def broadcasts_after_commit(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Send each ``(group, message)`` in order once the current transaction commits: one
    commit hook and one hand-over to the publisher for them all (a matcher's batch)."""
    if messages:
        transaction.on_commit(lambda: _send_many(messages))


def in_memory_layer_home(loop: asyncio.AbstractEventLoop | None) -> None:
    """Name the event loop on which this process's sockets receive from the in-memory
    channel layer (the server's; the embedded run's lifespan), or ``None``."""
    global _in_memory_home
    _in_memory_home = loop


def layer_of(group: str) -> str:
    """The channel layer (alias) that carries ``group``."""
    return MARKET_DATA_LAYER if group.startswith("market.") else DEFAULT_CHANNEL_LAYER


def _send(group: str, message: dict[str, Any]) -> None:
    _send_many([(group, message)])


def _send_many(messages: list[tuple[str, dict[str, Any]]]) -> None:
    items, in_memory = [], []
    for group, message in messages:
        layer = get_channel_layer(layer_of(group))
        if layer is None:
            continue
        (in_memory if isinstance(layer, InMemoryChannelLayer) else items).append((layer, group, message))
    if in_memory:
        _send_in_memory(in_memory)
    if items:
        _publisher.submit(items)


def _send_in_memory(items: list[tuple[Any, str, dict[str, Any]]]) -> None:
    """Run the in-memory layer's ``group_send`` of each item, in order, on the layer's home
    loop when one is named and this is another thread; otherwise ``async_to_sync``'s
    (which, under ``sync_to_async``, is the loop that called it)."""
    home = _in_memory_home
    if home is not None and home.is_running():
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a thread without a loop of its own
            asyncio.run_coroutine_threadsafe(_group_send_each(items), home).result()
            return
    for layer, group, message in items:
        async_to_sync(layer.group_send)(group, message)


async def _group_send_each(items: list[tuple[Any, str, dict[str, Any]]]) -> None:
    for layer, group, message in items:
        await layer.group_send(group, message)


class _Publisher:
    """A daemon thread with its own event loop that sends queued broadcasts in order."""

    def __init__(self) -> None:
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """No publisher yet. Also a forked child's start: the fork copies the loop as
        running but not its thread (and the lock as it was), so the child's broadcasts
        would wake the parent's loop and be lost. What the parent had queued is the
        parent's to send; the child starts a publisher of its own on its first broadcast."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Any, str, dict[str, Any]]] | None = None

    def submit(self, items: list[tuple[Any, str, dict[str, Any]]]) -> None:
        """Queue ``(layer, group, message)`` items, in order, with one wake-up of the loop."""
        loop, queue = self._ensure_started()
        loop.call_soon_threadsafe(self._put, queue, items)

    @staticmethod
    def _put(queue: asyncio.Queue, items: list[tuple[Any, str, dict[str, Any]]]) -> None:
        for item in items:
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
            items = [await queue.get()]
            while not queue.empty():  # whatever else is waiting goes out with it
                items.append(queue.get_nowait())
            try:
                for layer, run in _runs(items):
                    await _group_send_many(layer, run)
            finally:
                for _ in items:
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


def _runs(items: list[tuple[Any, str, dict[str, Any]]]) -> list[tuple[Any, list[tuple[str, dict[str, Any]]]]]:
    """``items`` cut into consecutive runs for the same layer, in order."""
    runs: list[tuple[Any, list[tuple[str, dict[str, Any]]]]] = []
    for layer, group, message in items:
        if not runs or runs[-1][0] is not layer:
            runs.append((layer, []))
        runs[-1][1].append((group, message))
    return runs


# channels_redis 4.3's group_send script (requirements.txt pins the version): queue each
# serialised message on its channel's sorted set unless the channel is at capacity.
_GROUP_SEND_LUA = """
    local over_capacity = 0
    local current_time = ARGV[#ARGV - 1]
    local expiry = ARGV[#ARGV]
    for i=1,#KEYS do
        if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
            redis.call('ZADD', KEYS[i], current_time, ARGV[i])
            redis.call('EXPIRE', KEYS[i], expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
    return over_capacity
"""


async def _group_send_many(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Send ``messages`` (group, message) in order. On channels_redis's
    ``RedisChannelLayer`` this is exactly what ``group_send`` does for each message, with
    the commands of all of them pipelined: one round trip to read every group's members,
    one to queue every message on its channels, where ``group_send`` takes two to four per
    message. Any other layer gets one ``group_send`` per message."""
    if type(layer) is not RedisChannelLayer:
        for group, message in messages:
            try:
                await layer.group_send(group, message)
            except Exception:  # a notification: the data is committed whatever happens here
                logger.exception("broadcast to %s failed; dropped", group)
        return
    try:
        members = await _group_members(layer, {group for group, _ in messages})
        pipelines: dict[int, Any] = {}
        for group, message in messages:
            if not members[group]:
                continue
            by_connection, serialised, capacity = layer._map_channel_keys_to_connection(members[group], message)
            for index, keys in by_connection.items():
                pipe = pipelines.get(index)
                if pipe is None:
                    pipe = pipelines[index] = layer.connection(index).pipeline(transaction=False)
                now = time.time()
                for key in keys:
                    pipe.zremrangebyscore(key, min=0, max=int(now) - int(layer.expiry))
                args = [serialised[key] for key in keys] + [capacity[key] for key in keys] + [now, layer.expiry]
                pipe.eval(_GROUP_SEND_LUA, len(keys), *keys, *args)
        for pipe in pipelines.values():
            results = await pipe.execute()
            over = [r for r in results if isinstance(r, int) and r > 0]
            if over:
                logger.info("broadcast: %d channel(s) over capacity", sum(over))
    except Exception:  # a notification: the data is committed whatever happens here
        logger.exception("broadcast of %d message(s) failed; dropped", len(messages))


async def _group_members(layer: Any, groups: set[str]) -> dict[str, list[str]]:
    """The channels of each group (expired memberships discarded first, as ``group_send``)."""
    by_connection: dict[int, list[str]] = {}
    for group in sorted(groups):
        by_connection.setdefault(layer.consistent_hash(group), []).append(group)
    members: dict[str, list[str]] = {}
    for index, names in by_connection.items():
        pipe = layer.connection(index).pipeline(transaction=False)
        expired = int(time.time()) - layer.group_expiry
        for group in names:
            key = layer._group_key(group)
            pipe.zremrangebyscore(key, min=0, max=expired)
            pipe.zrange(key, 0, -1)
        results = await pipe.execute()
        for group, channels in zip(names, results[1::2], strict=True):
            members[group] = [channel.decode("utf8") for channel in channels]
    return members


_publisher = _Publisher()


def broadcasts_flush(timeout: float = 5.0) -> bool:
    """Block until this process's queued broadcasts have been handed to the channel layer."""
    return _publisher.flush(timeout)
