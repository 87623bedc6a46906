"""HTTP middleware of the project."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from weakref import WeakKeyDictionary

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import async_only_middleware


@async_only_middleware
def concurrency_limit(get_response: Callable) -> Callable:
    """At most ``WEB_MAX_CONCURRENT_REQUESTS`` requests run the view stack at once in one web
    process; the rest wait their turn.

    Under ASGI, Django runs every request's synchronous code on a thread of its own, and
    each such thread opens its own database connection: without a bound, a burst of
    requests becomes a burst of connections, and past the server's ``max_connections`` the
    requests fail. Waiting here turns overload into queueing (visible as latency) instead
    of errors. WebSocket traffic does not pass through here. The bound is per event loop:
    one per web process under uvicorn.
    """
    limits: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = WeakKeyDictionary()

    async def middleware(request: HttpRequest) -> HttpResponse:
        loop = asyncio.get_running_loop()
        limit = limits.get(loop)
        if limit is None:
            limit = limits[loop] = asyncio.Semaphore(settings.WEB_MAX_CONCURRENT_REQUESTS)
        async with limit:
            return await get_response(request)

    return middleware
