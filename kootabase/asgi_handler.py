"""Django's ASGI handler with a fixed set of request threads per web process, and the
middleware chain run synchronously in one hop to that thread.

Django runs a request's synchronous code (middleware, DRF views, the ORM) on a thread,
and by default every request gets a *new* thread (asgiref's ``ThreadSensitiveContext``
per request). A new thread means a new database connection for every request (about
1 ms of CPU for the connection and its set-up queries, plus a thread start), and with
persistent connections on, a connection left behind per dead thread.

Here each web process keeps ``WEB_MAX_CONCURRENT_REQUESTS`` request contexts, each with
its own long-lived thread and so its own persistent database connection
(``DB_CONN_MAX_AGE``). A request takes a free context for its whole life and gives it
back at the end; when all are busy, the request waits its turn. That also bounds the
process's database connections: overload becomes queueing (latency), never "too many
connections" errors. WebSocket and lifespan traffic do not pass through here.

The middleware chain and the view run as one synchronous call on that thread. Django's
asynchronous chain would hop between the event loop and the thread twice per middleware
(``MiddlewareMixin`` runs each ``process_request``/``process_response`` through
``sync_to_async``) and once more for the synchronous view: about twenty thread switches
per request for a stack of synchronous middleware and DRF views. Every middleware here
is synchronous-capable; only the request body and the response travel asynchronously.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from weakref import WeakKeyDictionary

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

ARRIVED = "kootabase.arrived"  # ASGI scope key: time.perf_counter() when the request came in


class PooledASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self._pools: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.LifoQueue[ThreadPoolExecutor]] = (
            WeakKeyDictionary()
        )

    def _pool(self) -> asyncio.LifoQueue[ThreadPoolExecutor]:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = asyncio.LifoQueue()  # the most recently used thread first
            for _ in range(settings.WEB_MAX_CONCURRENT_REQUESTS):
                pool.put_nowait(ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-request"))
        return pool

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        scope[ARRIVED] = time.perf_counter()  # request latency includes the wait for a thread
        pool = self._pool()
        executor = await pool.get()
        try:
            # The request's sync code runs on this executor's one thread (Django's own
            # ThreadSensitiveContext inside sees this one and steps aside); the executor,
            # its thread and the thread's connection outlive the request.
            async with ThreadSensitiveContext(executor=executor):
                await super().__call__(scope, receive, send)
        finally:
            pool.put_nowait(executor)

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)  # one synchronous chain (see the module's docstring)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application() -> PooledASGIHandler:
    """Like ``django.core.asgi.get_asgi_application``, with the pooled handler."""
    import django

    django.setup(set_prefix=False)
    return PooledASGIHandler()
