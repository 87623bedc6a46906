"""Broadcasts leave after commit, in order, and through one long-lived publisher per
process when the channel layer is shared (Redis)."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from kootabase.events import broadcast_after_commit, broadcasts_flush


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
