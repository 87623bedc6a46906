"""How many WebSocket connections the web tier holds.

Each web process counts its accepted connections (``ConnectionCounter``, wrapped around
the WebSocket application in ``kootabase.asgi``) and publishes the count into the shared
store's ``websocket`` group under its own name (host:pid): at once after a change (several
changes in a burst make one write) and every ``REPUBLISH_EVERY`` seconds, so the record of
a process that died expires (``monitoring.services.WEBSOCKET_RECORD_TTL``). The dashboard
sums the live records.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import weakref
from typing import Any

logger = logging.getLogger(__name__)

REPUBLISH_EVERY = 15.0  # seconds; well within the record's lifetime


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Counter:
    def __init__(self) -> None:
        self.connections = 0
        self.publishers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Publisher] = weakref.WeakKeyDictionary()

    def changed(self) -> None:
        loop = asyncio.get_running_loop()
        publisher = self.publishers.get(loop)
        if publisher is None:
            publisher = self.publishers[loop] = _Publisher(loop)
        publisher.wake()


class _Publisher:
    """Per event loop: one write at a time on the loop's executor (a change during a write
    makes one more), and a timer that writes every ``REPUBLISH_EVERY`` seconds. No task
    lives on the loop, so nothing holds up its shutdown."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)  # held weakly: the loop is the key of ``_Counter.publishers``
        self.writing = False
        self.again = False
        loop.call_later(REPUBLISH_EVERY, self._tick)

    def wake(self) -> None:
        loop = self.loop()
        if loop is None or loop.is_closed():
            return
        if self.writing:
            self.again = True
            return
        self.writing = True
        loop.run_in_executor(None, _publish).add_done_callback(self._written)

    def _written(self, future: asyncio.Future) -> None:
        self.writing = False
        if self.again:
            self.again = False
            self.wake()

    def _tick(self) -> None:
        self.wake()
        loop = self.loop()
        if loop is not None and not loop.is_closed():
            loop.call_later(REPUBLISH_EVERY, self._tick)


counter = _Counter()


def _publish() -> None:
    from monitoring.services import websocket_count_publish

    try:
        websocket_count_publish(process=process_name(), connections=counter.connections)
    except Exception:  # the count is best effort; the next round retries
        logger.warning("monitoring: cannot publish the WebSocket count", exc_info=True)


async def publish() -> None:
    """Write this process's count into the store now."""
    await asyncio.get_running_loop().run_in_executor(None, _publish)


class ConnectionCounter:
    """ASGI middleware for the ``websocket`` protocol: counts a connection from the moment
    the application accepts it until the connection's application returns."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        accepted = False

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal accepted
            if message.get("type") == "websocket.accept" and not accepted:
                accepted = True
                counter.connections += 1
                counter.changed()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if accepted:
                counter.connections -= 1
                counter.changed()
