"""Embedded mode: the matchers run inside the ASGI web process.

Without ``REDIS_URL`` the channel layer is in-process memory, so a matcher in another
process could never reach this process's sockets. The web process therefore runs the
same ``orders.matcher`` code, with the same single-writer lock, in one background thread
that runs every market — as one ``run_matcher`` process without ``--market``
does, so a swap across two markets finds both books in the same matcher (see
docs/orders.md, "Swap") — started and stopped by the ASGI lifespan
(``kootabase.asgi``). The lifespan also names the server's event loop as the in-memory
channel layer's home (``kootabase.events.in_memory_layer_home``), so the after-commit
broadcasts of this thread, of the requests and of the placement thread run on that loop,
where the hub and the sockets listen.

With ``REDIS_URL`` the matcher is its own process (``manage.py run_matcher``) and this
does nothing. ``KOOTABASE_EMBEDDED_MATCHER=0`` turns it off (e.g. to run ``run_matcher``
by hand in embedded mode).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connections

from kootabase.events import in_memory_layer_home
from orders.matcher import FencingError, MatcherLockError, matchers_run
from orders.models import Market

logger = logging.getLogger(__name__)

RESTART_DELAY = 5.0


def embedded_matchers_enabled() -> bool:
    return not settings.REDIS_URL and os.environ.get("KOOTABASE_EMBEDDED_MATCHER", "1") != "0"


class EmbeddedMatchers:
    """One thread running ``matchers_run`` for every market (halted and cancel-only ones
    too: their matchers do what the status allows and resume with it)."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.tasks: list[asyncio.Future] = []
        self.executor: ThreadPoolExecutor | None = None
        self.symbols: list[str] = []

    async def start(self) -> None:
        self.symbols = await database_sync_to_async(
            lambda: list(Market.objects.values_list("symbol", flat=True))  # every status: see orders.controls
        )()
        if not self.symbols:
            return
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matcher")
        run = sync_to_async(self._run, thread_sensitive=False, executor=self.executor)
        self.tasks = [asyncio.ensure_future(run(self.symbols))]
        logger.info("embedded matchers started for %s", ", ".join(self.symbols))

    def _run(self, symbols: list[str]) -> None:
        """Run the matchers until the web process stops. Another process holding a market
        (``MatcherLockError``) or taking the last one over (``FencingError``) ends this
        thread; anything else (the database not reachable at start, say) is logged and
        the matchers are started again after ``RESTART_DELAY`` seconds."""
        try:
            while not self.stopping.is_set():
                try:
                    matchers_run(symbols=symbols, should_stop=self.stopping.is_set)
                    return
                except MatcherLockError as exc:
                    logger.warning("embedded matcher not started: %s", exc)
                    return
                except FencingError as exc:
                    logger.error("embedded matchers %s stopped: %s", ", ".join(symbols), exc)
                    return
                except Exception:
                    logger.exception("embedded matchers failed; starting them again in %d s", RESTART_DELAY)
                    connections.close_all()
                    self.stopping.wait(RESTART_DELAY)
        finally:
            connections.close_all()

    async def stop(self) -> None:
        self.stopping.set()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.executor is not None:
            self.executor.shutdown(wait=False)


class Lifespan:
    """The ASGI lifespan protocol: start the embedded matchers, stop them on shutdown."""

    def __init__(self) -> None:
        self.matchers: EmbeddedMatchers | None = None

    async def __call__(self, scope: dict, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                in_memory_layer_home(asyncio.get_running_loop())  # where this process's sockets listen
                try:
                    if embedded_matchers_enabled():
                        self.matchers = EmbeddedMatchers()
                        await self.matchers.start()
                except Exception as exc:  # reported to the server, which refuses to start
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.matchers is not None:
                    await self.matchers.stop()
                in_memory_layer_home(None)
                await send({"type": "lifespan.shutdown.complete"})
                return
