"""Market data travels over its own channel layer (Redis Pub/Sub in production), private
events over the default one; both only after the commit."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from kootabase.events import MARKET_DATA_LAYER, broadcast_after_commit, broadcasts_flush

pytestmark = pytest.mark.django_db(transaction=True)


def commit(group: str, n: int) -> None:
    with transaction.atomic():
        broadcast_after_commit(group, {"type": "test.message", "n": n})


async def next_message(layer, channel: str) -> dict | None:
    try:
        return await asyncio.wait_for(layer.receive(channel), 2)
    except TimeoutError:
        return None


def test_market_groups_use_the_market_data_layer_and_the_rest_the_default():
    market, default = get_channel_layer(MARKET_DATA_LAYER), get_channel_layer()
    assert market is not default

    async def scenario() -> None:
        on_market = await market.new_channel()
        on_default = await default.new_channel()
        for layer, channel in ((market, on_market), (default, on_default)):
            await layer.group_add("market.TEST-LAYERS", channel)
            await layer.group_add("user.424242", channel)
        await sync_to_async(commit)("market.TEST-LAYERS", 1)
        await sync_to_async(commit)("user.424242", 2)
        await sync_to_async(broadcasts_flush)()
        assert (await next_message(market, on_market))["n"] == 1
        assert (await next_message(default, on_default))["n"] == 2
        # each went over its own layer only
        assert await next_message(market, on_market) is None
        assert await next_message(default, on_default) is None
        for layer, channel in ((market, on_market), (default, on_default)):
            await layer.group_discard("market.TEST-LAYERS", channel)
            await layer.group_discard("user.424242", channel)

    async_to_sync(scenario)()
