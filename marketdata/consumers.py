"""The public and private real-time stream at ``/ws/v1/``.

Messages are JSON objects with an ``op``: ``ping``, ``auth``, ``subscribe``,
``unsubscribe``. Every bad message gets an error frame
``{"op": "error", "code": ..., "message": ...}`` and the connection stays open.

Public channels (``depth.<symbol>``, ``trades.<symbol>``, ``ticker.<symbol>``,
``candles.<interval>.<symbol>``, ``tickers``) are served by the process's hub
(``marketdata.hub``). Private channels (``orders``, ``trades``, ``balances``) need an
``auth`` first; the connection then joins its user's ``user.<id>`` group and forwards
only what it subscribed to. Frames leave through a bounded outbox: a client that does
not read falls behind by at most ``OUTBOX_SIZE`` frames and is then disconnected (code
4008), so one slow reader never holds up the others.

See docs/marketdata.md and docs/api.md.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from kootabase.errors import ServiceError
from marketdata.auth import ws_authenticate
from marketdata.hub import get_hub
from marketdata.selectors import INTERVALS
from orders.models import Market
from orders.services import user_group

MAX_SUBSCRIPTIONS = 50
OUTBOX_SIZE = 2000
PRIVATE = {"orders": "order.update", "trades": "user.trade", "balances": "user.balances"}
PUBLIC_KINDS = ("depth", "trades", "ticker")
SLOW_CONSUMER = 4008


def parse_channel(name: Any) -> tuple[str, str | None, str | None] | None:
    """``(kind, symbol, interval)`` of a channel name, or None if it is not one."""
    if not isinstance(name, str) or len(name) > 64:
        return None
    if name in PRIVATE or name == "tickers":
        return name, None, None
    head, _, rest = name.partition(".")
    if head in PUBLIC_KINDS and rest and "." not in rest:
        return head, rest.upper(), None
    if head == "candles":
        interval, _, symbol = rest.partition(".")
        if interval in INTERVALS and symbol and "." not in symbol:
            return head, symbol.upper(), interval
    return None


def is_private(channel: tuple[str, str | None, str | None]) -> bool:
    return channel[1] is None and channel[0] in PRIVATE


def channel_name(kind: str, symbol: str | None, interval: str | None) -> str:
    if symbol is None:
        return kind
    return f"candles.{interval}.{symbol}" if kind == "candles" else f"{kind}.{symbol}"


class StreamConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.subscriptions: set[tuple[str, str | None, str | None]] = set()
        self.user: Any = None
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(OUTBOX_SIZE)
        self.closing = False
        await self.accept()
        self.writer = asyncio.create_task(self._write())
        session_user = self.scope.get("user")
        if session_user is not None and session_user.is_authenticated:
            await self._authenticated(session_user)

    async def disconnect(self, code: int) -> None:
        hub = get_hub()
        for channel in self.subscriptions:
            if not is_private(channel):
                hub.unsubscribe(self, *channel)
        self.subscriptions.clear()
        if self.user is not None:
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.cancel()

    # -- outgoing

    def push(self, text: str) -> None:
        """Queue a frame (the hub calls this); a client too far behind is disconnected."""
        if self.closing:
            return
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.closing = True
            self.outbox = asyncio.Queue(1)
            self.outbox.put_nowait(None)

    async def _write(self) -> None:
        while True:
            text = await self.outbox.get()
            if text is None:
                await self.close(code=SLOW_CONSUMER)
                return
            await self.send(text_data=text)

    async def send_json(self, content: dict[str, Any]) -> None:
        self.push(json.dumps(content, separators=(",", ":")))

    async def send_error(self, code: str, message: str, **details: Any) -> None:
        body: dict[str, Any] = {"op": "error", "code": code, "message": message}
        if details:
            body["details"] = details
        await self.send_json(body)

    # -- incoming

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error("binary_not_supported", "Send JSON text frames.")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self.send_error("malformed_json", "The message is not valid JSON.")
            return
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            await self.send_error("missing_op", 'A message is a JSON object with an "op".')
            return
        handler = getattr(self, f"op_{message['op']}", None)
        if handler is None:
            await self.send_error("unknown_op", f"Unknown op {message['op']!r}.")
            return
        await handler(message)

    async def op_ping(self, message: dict[str, Any]) -> None:
        await self.send_json({"op": "pong", "id": message.get("id")})

    async def op_auth(self, message: dict[str, Any]) -> None:
        if self.user is not None:
            await self.send_error("already_authenticated", "This connection is already authenticated.")
            return
        client = self.scope.get("client") or ("", 0)
        try:
            user = await database_sync_to_async(ws_authenticate)(message=message, ip=client[0] or "")
        except ServiceError as exc:
            await self.send_error("auth_failed", exc.message, reason=exc.code)
            return
        await self._authenticated(user, message.get("id"))

    async def _authenticated(self, user: Any, message_id: Any = None) -> None:
        self.user = user
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        if message_id is not None or self.scope.get("user") is not user:
            await self.send_json({"op": "authenticated", "id": message_id, "user_id": user.pk})

    async def _parse(self, message: dict[str, Any]) -> list[tuple[str, str | None, str | None]] | None:
        names = message.get("channels")
        if not isinstance(names, list) or not names or len(names) > MAX_SUBSCRIPTIONS:
            await self.send_error(
                "channels_invalid", f'"channels" is a list of 1 to {MAX_SUBSCRIPTIONS} channel names.'
            )
            return None
        parsed = []
        for name in names:
            channel = parse_channel(name)
            if channel is None:
                await self.send_error("unknown_channel", f"Unknown channel {name!r}.", channel=name)
                return None
            parsed.append(channel)
        return parsed

    async def op_subscribe(self, message: dict[str, Any]) -> None:
        parsed = await self._parse(message)
        if parsed is None:
            return
        symbols = {symbol for _, symbol, _ in parsed if symbol}
        if symbols:
            known = await database_sync_to_async(
                lambda: set(Market.objects.filter(symbol__in=symbols).values_list("symbol", flat=True))
            )()
            for kind, symbol, interval in parsed:
                if symbol and symbol not in known:
                    name = channel_name(kind, symbol, interval)
                    await self.send_error("unknown_channel", f"Unknown market in {name!r}.", channel=name)
                    return
        if self.user is None and any(is_private(c) for c in parsed):
            await self.send_error("auth_required", 'Private channels need {"op": "auth"} first.')
            return
        new = [c for c in dict.fromkeys(parsed) if c not in self.subscriptions]
        if len(self.subscriptions) + len(new) > MAX_SUBSCRIPTIONS:
            await self.send_error(
                "too_many_subscriptions", f"At most {MAX_SUBSCRIPTIONS} subscriptions per connection."
            )
            return
        self.subscriptions.update(new)
        await self.send_json(
            {"op": "subscribed", "id": message.get("id"), "channels": [channel_name(*c) for c in parsed]}
        )
        hub = get_hub()
        for channel in new:
            if not is_private(channel):
                await hub.subscribe(self, *channel)

    async def op_unsubscribe(self, message: dict[str, Any]) -> None:
        parsed = await self._parse(message)
        if parsed is None:
            return
        hub = get_hub()
        for channel in parsed:
            if channel in self.subscriptions:
                self.subscriptions.discard(channel)
                if not is_private(channel):
                    hub.unsubscribe(self, *channel)
        await self.send_json(
            {"op": "unsubscribed", "id": message.get("id"), "channels": [channel_name(*c) for c in parsed]}
        )

    # -- private events from the user's group

    def _private(self, channel: str, data: Any) -> None:
        if (channel, None, None) in self.subscriptions:
            self.push(json.dumps({"op": "update", "channel": channel, "data": data}, separators=(",", ":")))

    async def order_update(self, event: dict[str, Any]) -> None:
        self._private("orders", event["order"])

    async def user_trade(self, event: dict[str, Any]) -> None:
        self._private("trades", event["trade"])

    async def user_balances(self, event: dict[str, Any]) -> None:
        self._private("balances", event["balances"])
