"""Listening to users' private groups on the real channel layer (in memory, or Redis)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from kootabase.events import broadcasts_flush, user_group
from wallets.models import AccountKind, LedgerAccount


class UserEvents:
    """Joins a channel of its own to the ``user.<id>`` group of each user given;
    ``take(user)`` returns the messages that reached it since the last call.

    It hears only what is committed after it joins: broadcasts this process committed
    before (a ``fund`` in a transactional test) are sent on their way first, so they
    cannot reach the new channel late."""

    def __init__(self, *users: Any) -> None:
        broadcasts_flush()
        self.layer = get_channel_layer()
        self.channels = {user.pk: f"tests.{uuid.uuid4().hex}" for user in users}
        for user_id, channel in self.channels.items():
            async_to_sync(self.layer.group_add)(user_group(user_id), channel)

    def take(self, user: Any, kind: str | None = "user.balances") -> list[dict[str, Any]]:
        broadcasts_flush()  # with Redis: what was committed has reached the layer
        channel = self.channels[user.pk]

        async def drain() -> list[dict[str, Any]]:
            messages = []
            while True:
                try:
                    messages.append(await asyncio.wait_for(self.layer.receive(channel), 0.2))
                except TimeoutError:
                    return messages

        return [m for m in async_to_sync(drain)() if kind is None or m["type"] == kind]


def balances_now(user: Any) -> dict[str, tuple[Decimal, Decimal]]:
    """Every currency of ``user`` as (available, locked), read from the ledger."""
    found: dict[str, dict[str, Decimal]] = {}
    for code, kind, balance in LedgerAccount.objects.filter(user=user).values_list("currency__code", "kind", "balance"):
        found.setdefault(code, {})[kind] = balance
    return {
        code: (kinds.get(AccountKind.AVAILABLE, Decimal(0)), kinds.get(AccountKind.LOCKED, Decimal(0)))
        for code, kinds in found.items()
    }


def as_decimals(message: dict[str, Any]) -> dict[str, tuple[Decimal, Decimal]]:
    """A ``user.balances`` message as {currency: (available, locked)}."""
    return {b["currency"]: (Decimal(b["available"]), Decimal(b["locked"])) for b in message["balances"]}
