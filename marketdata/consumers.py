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

An authenticated connection does not outlive what authenticated it (``marketdata.auth.Grant``):
when the access token expires (a timer set to its ``exp``), or the account is disabled,
logged out everywhere, its API key revoked or its session ended (``AuthWatch``: one
check per process for all its connections every ``RECHECK_EVERY`` seconds), and on any
message received after that, the connection gets an ``auth_expired`` error frame with
the reason and is closed with code 4001 (``AUTH_EXPIRED``). The client reconnects and
authenticates with a fresh token.

See docs/marketdata.md and docs/api.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from kootabase.api.parsers import nests_deeper_than
from kootabase.errors import ServiceError
from kootabase.events import user_group
from marketdata.auth import Grant, Reason, grants_revoked, session_grant, ws_authenticate
from marketdata.hub import get_hub
from marketdata.selectors import INTERVALS
from orders.models import Market

MAX_SUBSCRIPTIONS = 50
OUTBOX_SIZE = 2000
PRIVATE = {"orders": "order.update", "trades": "user.trade", "balances": "user.balances"}
PUBLIC_KINDS = ("depth", "trades", "ticker")
SLOW_CONSUMER = 4008  # close code: the client did not read its frames
AUTH_EXPIRED = 4001  # close code: the token expired or the authentication was revoked; reconnect with a fresh one
RECHECK_EVERY = 30.0  # seconds between two checks of every authenticated connection of a process
RECHECK_ON_MESSAGE_AFTER = 1.0  # a message received at least this long after the last check checks again

logger = logging.getLogger(__name__)

_REASONS: dict[str, str] = {
    "token_expired": "The access token has expired.",
    "logged_out": "The account was logged out everywhere.",
    "account_disabled": "The account is disabled.",
    "api_key_revoked": "The API key was revoked.",
    "session_ended": "The session has ended.",
}


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
        self.grant: Grant | None = None
        self.checked_at = 0.0
        self.expiry: asyncio.TimerHandle | None = None
        self.outbox: deque[str | None] = deque()  # None: close now
        self.wakeup: asyncio.Future[None] | None = None  # set while the writer waits for frames
        self.suspended: tuple[Any, Any] | None = None  # a send that could not finish at once
        self.closing = False
        self.close_code = SLOW_CONSUMER
        await self.accept()
        self.writer = asyncio.create_task(self._write())
        session_user = self.scope.get("user")
        if session_user is not None and session_user.is_authenticated:
            session = self.scope.get("session")
            await self._authenticated(
                session_grant(user=session_user, session_key=getattr(session, "session_key", None))
            )

    async def disconnect(self, code: int) -> None:
        hub = get_hub()
        for channel in self.subscriptions:
            if not is_private(channel):
                hub.unsubscribe(self, *channel)
        self.subscriptions.clear()
        if self.expiry is not None:
            self.expiry.cancel()
        get_watch().discard(self)
        if self.user is not None:
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.cancel()

    # -- outgoing

    # The hub pushes each frame to every subscriber, so this is the fan-out's hot path. A
    # frame for a connection with nothing queued is handed to the server's ``send`` at once,
    # inside the hub's call: the server writes it to the socket without suspending unless
    # the socket is full, so a frame to a thousand subscribers is one pass over them, not a
    # thousand task switches (which also kept the event loop from the channel layer's
    # replies for as long: docs/benchmarks.md). A send that does suspend (the client reads
    # slowly) is finished by the connection's writer task, and later frames queue behind it
    # in a bounded outbox.

    def push(self, text: str) -> None:
        """Send a frame now if the connection is idle, else queue it (the hub calls this);
        a client too far behind is disconnected."""
        if self.closing:
            return
        wakeup = self.wakeup
        if not self.outbox and self.suspended is None and wakeup is not None and not wakeup.done():
            self._send_now(text)
            return
        if len(self.outbox) >= OUTBOX_SIZE:
            self._shut(SLOW_CONSUMER)
            return
        self.outbox.append(text)
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _send_now(self, text: str) -> None:
        """Run the server's ``send`` up to its first suspension; if it suspends, the
        writer task finishes it."""
        coroutine = self.base_send({"type": "websocket.send", "text": text})
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return
        except Exception:  # the socket is gone; the server's disconnect event follows
            logger.debug("stream: send failed", exc_info=True)
            self.closing = True
            return
        self.suspended = (coroutine, awaited)
        assert self.wakeup is not None
        self.wakeup.set_result(None)

    def _shut(self, code: int, last: str | None = None) -> None:
        """Drop what is queued, send ``last`` (if any), then close with ``code``."""
        self.closing, self.close_code = True, code
        self.outbox.clear()
        if last is not None:
            self.outbox.append(last)
        self.outbox.append(None)
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    async def _write(self) -> None:
        outbox, send, loop = self.outbox, self.base_send, asyncio.get_running_loop()
        while True:
            if self.suspended is not None:
                await _finish(*self.suspended)
                self.suspended = None
            while outbox:
                text = outbox.popleft()
                if text is None:
                    await self.close(code=self.close_code)
                    return
                await send({"type": "websocket.send", "text": text})
            self.wakeup = loop.create_future()
            await self.wakeup
            self.wakeup = None

    async def send_json(self, content: dict[str, Any]) -> None:
        self.push(json.dumps(content, separators=(",", ":")))

    async def send_error(self, code: str, message: str, **details: Any) -> None:
        body: dict[str, Any] = {"op": "error", "code": code, "message": message}
        if details:
            body["details"] = details
        await self.send_json(body)

    # -- incoming

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing or not await self._still_authenticated():
            return
        if text_data is None:
            await self.send_error("binary_not_supported", "Send JSON text frames.")
            return
        try:
            if nests_deeper_than(text_data):  # the decoder would recurse past the stack (see there)
                raise ValueError("nested too deep")
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
            grant = await database_sync_to_async(ws_authenticate)(message=message, ip=client[0] or "")
        except ServiceError as exc:
            await self.send_error("auth_failed", exc.message, reason=exc.code)
            return
        await self._authenticated(grant, message.get("id"))

    async def _authenticated(self, grant: Grant, message_id: Any = None) -> None:
        self.grant, self.user, self.checked_at = grant, grant.user, time.monotonic()
        await self.channel_layer.group_add(user_group(grant.user.pk), self.channel_name)
        if grant.expires_at is not None:
            loop = asyncio.get_running_loop()
            self.expiry = loop.call_at(loop.time() + grant.expires_at - time.time(), self.end_auth, "token_expired")
        get_watch().add(self)
        if message_id is not None or grant.method != "session":
            await self.send_json({"op": "authenticated", "id": message_id, "user_id": grant.user.pk})

    # -- the authentication's lifetime

    async def _still_authenticated(self) -> bool:
        """Before a message is handled: the token has not expired (no query) and, at most
        once per ``RECHECK_ON_MESSAGE_AFTER`` seconds, the grant still holds (one query)."""
        if self.grant is None:
            return True
        if self.grant.expired():
            self.end_auth("token_expired")
            return False
        if time.monotonic() - self.checked_at >= RECHECK_ON_MESSAGE_AFTER:
            try:
                await get_watch().check([self])
            except Exception:  # the database is away: the message is served, the timer checks again
                logger.exception("stream: cannot check the connection's authentication")
        return not self.closing

    def end_auth(self, reason: Reason) -> None:
        """The grant no longer holds: say why, then close with ``AUTH_EXPIRED``."""
        if self.closing:
            return
        logger.info("stream: closing user %s's connection: %s", getattr(self.user, "pk", None), reason)
        error = {"op": "error", "code": "auth_expired", "message": _REASONS[reason], "details": {"reason": reason}}
        self._shut(AUTH_EXPIRED, json.dumps(error, separators=(",", ":")))

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

    async def user_events(self, event: dict[str, Any]) -> None:
        """A matcher batch's orders and fills of this user: one frame each, as above."""
        for order in event["orders"]:
            self._private("orders", order)
        for trade in event["trades"]:
            self._private("trades", trade)


async def _finish(coroutine: Any, awaited: Any) -> None:
    """Drive a coroutine that suspended on ``awaited`` to its end, as a task would."""
    try:
        while True:
            if isinstance(awaited, asyncio.Future):
                await asyncio.wait([awaited])  # its result or error is raised inside the coroutine
            else:
                await asyncio.sleep(0)
            awaited = coroutine.send(None)
    except StopIteration:
        return
    except asyncio.CancelledError:
        coroutine.close()
        raise


class AuthWatch:
    """The authenticated connections of one event loop (an ASGI process), checked together
    every ``RECHECK_EVERY`` seconds with a few queries (``marketdata.auth.grants_revoked``)."""

    def __init__(self) -> None:
        self.connections: set[StreamConsumer] = set()
        self.task: asyncio.Task | None = None

    def add(self, consumer: StreamConsumer) -> None:
        self.connections.add(consumer)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def discard(self, consumer: StreamConsumer) -> None:
        self.connections.discard(consumer)

    async def _run(self) -> None:
        while self.connections:
            await asyncio.sleep(RECHECK_EVERY)
            try:
                await self.check(list(self.connections))
            except Exception:  # the database is away: keep the connections, check again next round
                logger.exception("stream: cannot check the connections' authentication")

    async def check(self, consumers: list[StreamConsumer]) -> None:
        """Close those of ``consumers`` whose grant no longer holds."""
        grants = {id(c): c.grant for c in consumers if c.grant is not None and not c.closing}
        revoked = await database_sync_to_async(grants_revoked)(grants=grants)
        now = time.monotonic()
        for consumer in consumers:
            consumer.checked_at = now
            reason = revoked.get(id(consumer))
            if reason is not None:
                consumer.end_auth(reason)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AuthWatch] = weakref.WeakKeyDictionary()


def get_watch() -> AuthWatch:
    """The watch of the running event loop (one per ASGI process)."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = AuthWatch()
    return watch
