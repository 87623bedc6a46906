"""Django's ASGI handler with a fixed set of request threads per web process, and the
middleware chain run synchronously in one hop to that thread.

Django runs a request's synchronous code (middleware, DRF views, the ORM) on a thread,
and by default every request gets a *new* thread (asgiref's ``ThreadSensitiveContext``
per request). A new thread means a new database connection for every request (about
1 ms of CPU for the connection and its set-up queries, plus a thread start), and with
persistent connections on, a connection left behind per dead thread.

Here each web process keeps ``WEB_MAX_CONCURRENT_REQUESTS`` request threads (an executor
of one thread each), long-lived, and so each with its own persistent database connection
(``DB_CONN_MAX_AGE``). A request takes a free thread for its whole life and gives it
back at the end; when all are busy, the request waits its turn. That also bounds the
process's database connections: overload becomes queueing (latency), never "too many
connections" errors. WebSocket and lifespan traffic do not pass through here.

The request's whole synchronous part is one call on that thread: the ``request_started``
signal, building the request, the middleware chain and the view, and — for a response
whose body is already in memory, every API answer — closing the response (which sends
``request_finished``); only then is the response sent. Django's own handler hops to the
thread three times per request (the signal, the response, its close) and races the
response against a disconnect listener, and its asynchronous chain would hop twice per
middleware (``MiddlewareMixin`` runs each ``process_request``/``process_response``
through ``sync_to_async``) and once more for the synchronous view. Every middleware here
is synchronous-capable; only the request body and the response travel asynchronously. A
client that disconnects meanwhile does not stop a synchronous view (it never could);
its response is then dropped by the server. A streaming response (a file) is sent first
and closed afterwards, as Django does.

The hand-over is the executor's own (``run_in_executor``, in a copy of the request's
context variables), not asgiref's ``sync_to_async``: the executor already names the
thread, and what ``sync_to_async`` adds (finding its thread-sensitive executor, copying
the context variables back afterwards) was a third of the hop's cost. Django's database
connections stay per thread either way: on a thread without an event loop they are plain
thread-locals (``asgiref.local.Local(thread_critical=True)``). Each request thread is
marked, once when it starts, as working for the process's event loop, as
``sync_to_async`` marks its threads: ``async_to_sync`` in a request (the readiness
probe's round trip through the channel layer) runs its coroutine on that loop, with the
loop's connections, as under Django's own handler, not on a new loop per call.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from weakref import WeakKeyDictionary

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpRequest, HttpResponseBase
from django.urls import set_script_prefix

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
                executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="web-request", initializer=_serve_loop, initargs=(loop,)
                )
                pool.put_nowait(executor)
        return pool

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        scope[ARRIVED] = time.perf_counter()  # request latency includes the wait for a thread
        pool = self._pool()
        executor = await pool.get()
        try:
            await self._handle_on(executor, scope, receive, send)
        finally:
            pool.put_nowait(executor)

    async def _handle_on(self, executor: ThreadPoolExecutor, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        # The executor has one thread, so work handed to it runs one piece at a time, in
        # order: even a request whose task was cancelled meanwhile finishes before the
        # thread's next request starts, and never shares the thread's connection.
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        response = await loop.run_in_executor(executor, context.run, self._respond, scope, body_file)
        try:
            await self.send_response(response, send)
        finally:
            if response.streaming:
                await loop.run_in_executor(executor, context.run, self._close, response, body_file)

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """Everything of the request up to sending its response, on the request's thread."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # the server chunks the body itself
        if not response.streaming:
            self._close(response, body_file)
        return response

    @staticmethod
    def _close(response: HttpResponseBase, body_file: Any) -> None:
        try:
            response.close()  # sends request_finished
        finally:
            body_file.close()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)  # one synchronous chain (see the module's docstring)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def _serve_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Mark this request thread as working for ``loop``, as ``sync_to_async`` marks the
    threads it runs code on: ``async_to_sync`` here then runs its coroutine on ``loop``."""
    SyncToAsync.threadlocal.main_event_loop = loop
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()


def get_asgi_application() -> PooledASGIHandler:
    """Like ``django.core.asgi.get_asgi_application``, with the pooled handler."""
    import django

    django.setup(set_prefix=False)
    return PooledASGIHandler()
