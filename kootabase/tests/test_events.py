"""Broadcasts leave after commit, in order, and through one long-lived publisher per
process when the channel layer is shared (Redis)."""

import asyncio
import os
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from kootabase import events
from kootabase.events import (
    broadcast_after_commit,
    broadcasts_after_commit,
    broadcasts_flush,
    in_memory_layer_home,
)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_redis_broadcasts_leave_after_commit_in_order():
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)("events-test.")
    async_to_sync(layer.group_add)("events-test", channel)
    try:
        with transaction.atomic():
            for n in range(50):
                broadcast_after_commit("events-test", {"type": "test.message", "n": n})
        try:
            with transaction.atomic():
                broadcast_after_commit("events-test", {"type": "test.message", "n": "rolled back"})
                raise RuntimeError
        except RuntimeError:
            pass
        assert broadcasts_flush()

        async def receive_all() -> list:
            return [(await layer.receive(channel))["n"] for _ in range(50)]

        assert async_to_sync(receive_all)() == list(range(50))
    finally:
        async_to_sync(layer.group_discard)("events-test", channel)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_forked_child_starts_a_publisher_of_its_own():
    """A fork copies the publisher's loop as running, but not its thread: the child's
    broadcasts would wake the parent's loop and be lost. The child starts its own."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)("events-fork.")
    async_to_sync(layer.group_add)("events-fork", channel)
    try:
        broadcast_after_commit("events-fork", {"type": "test.message", "n": "parent"})  # the publisher runs
        assert broadcasts_flush()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                # What a commit hook runs (the child leaves the parent's database connection alone).
                events._send_many([("events-fork", {"type": "test.message", "n": "child"})])
                code = 0 if broadcasts_flush(timeout=10) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0

        async def receive_two() -> list:
            return [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(2)]

        assert async_to_sync(receive_two)() == ["parent", "child"]
    finally:
        async_to_sync(layer.group_discard)("events-fork", channel)


@pytest.mark.django_db(transaction=True)
def test_in_memory_broadcasts_leave_after_commit_only():
    layer = get_channel_layer()

    async def scenario() -> None:
        channel = await layer.new_channel("events-test.")
        await layer.group_add("events-test", channel)
        return channel

    channel = async_to_sync(scenario)()
    try:
        with transaction.atomic():
            broadcast_after_commit("events-test", {"type": "test.message", "n": "rolled back"})
            transaction.set_rollback(True)
        with transaction.atomic():
            broadcast_after_commit("events-test", {"type": "test.message", "n": 1})
        assert async_to_sync(layer.receive)(channel)["n"] == 1
    finally:
        async_to_sync(layer.group_discard)("events-test", channel)


@pytest.mark.django_db(transaction=True)
def test_in_memory_broadcasts_from_any_thread_run_on_the_layers_home_loop():
    """The embedded run's placement thread is a plain thread: its broadcasts must reach the
    server's loop at once and in order, not wait for something else to wake that loop."""
    layer = get_channel_layer()

    async def scenario() -> tuple[list, float]:
        in_memory_layer_home(asyncio.get_running_loop())
        channel = await layer.new_channel("events-test.")
        await layer.group_add("events-test", channel)
        sent = threading.Event()

        def from_a_plain_thread() -> None:
            broadcasts_after_commit([("events-test", {"type": "test.message", "n": n}) for n in range(3)])
            sent.set()

        started = time.perf_counter()
        threading.Thread(target=from_a_plain_thread).start()
        received = [(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in range(3)]
        waited = time.perf_counter() - started
        await layer.group_discard("events-test", channel)
        assert await asyncio.get_running_loop().run_in_executor(None, sent.wait, 5)  # its sends were waited for
        return received, waited

    try:
        received, waited = asyncio.run(scenario())
    finally:
        in_memory_layer_home(None)
    assert received == [0, 1, 2]
    assert waited < 5  # a send the loop does not see waits for the loop's next wake-up: here, the 10 s timeout


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_redis_broadcasts_of_one_commit_reach_every_member_of_their_group_in_order():
    """A batch's messages leave pipelined (kootabase.events._group_send_many): each channel
    gets exactly its groups' messages, in order, as one group_send per message gives."""
    layer = get_channel_layer()
    a, b, both = (async_to_sync(layer.new_channel)("events-test.") for _ in range(3))
    groups = {"events-test-a": [a, both], "events-test-b": [b, both]}
    for group, channels in groups.items():
        for channel in channels:
            async_to_sync(layer.group_add)(group, channel)
    try:
        messages = [(f"events-test-{g}", {"type": "test.message", "n": n}) for n, g in enumerate("abab")]
        messages.append(("events-test-nobody", {"type": "test.message", "n": "unheard"}))
        with transaction.atomic():
            broadcasts_after_commit(messages)
            broadcast_after_commit("events-test-a", {"type": "test.message", "n": 4})
        assert broadcasts_flush()

        async def receive(channel: str, count: int) -> list:
            return [(await layer.receive(channel))["n"] for _ in range(count)]

        assert async_to_sync(receive)(a, 3) == [0, 2, 4]
        assert async_to_sync(receive)(b, 2) == [1, 3]
        assert async_to_sync(receive)(both, 5) == [0, 1, 2, 3, 4]
    finally:
        for group, channels in groups.items():
            for channel in channels:
                async_to_sync(layer.group_discard)(group, channel)


@pytest.mark.redis
def test_a_socket_idle_longer_than_one_wait_keeps_its_channel():
    """The layer waits for a channel's messages 5 s at a time; its connections must not
    give up first (redis-py reads with a 5 s timeout by default)."""
    layer = get_channel_layer()

    async def idle() -> str:
        channel = await layer.new_channel("events-test.")
        try:
            await asyncio.wait_for(layer.receive(channel), 6.5)
        except TimeoutError:
            return "still waiting"
        return "a message"

    assert async_to_sync(idle)() == "still waiting"
