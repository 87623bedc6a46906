"""Request metrics: every answered HTTP request is counted, by method and status, and its
latency is added to its route's histogram (``monitoring.services.request_record``).

Installed first in ``MIDDLEWARE``, so the latency covers every middleware and the view,
and from the time the web process received the request (``ARRIVED``, set by
``kootabase.asgi_handler``): the wait for a free request thread counts too. The
chain runs synchronously on the request's thread, where the request is counted in the
process's memory; the asynchronous path serves Django's stock handler. The route is the URL
pattern that matched (``api/v1/orders/<int:order_id>``), never the path itself, so the
number of series stays bounded; a path that matched nothing is ``unmatched``. Each process
writes its counts to the shared store once a second (``monitoring.services``), so they add
up across processes and pods.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase

from kootabase.asgi_handler import ARRIVED
from monitoring.services import request_record

UNMATCHED = "unmatched"


def started_at(request: HttpRequest) -> float:
    """When the request reached this process: its ASGI arrival time, else now."""
    scope = getattr(request, "scope", None)
    return scope.get(ARRIVED, time.perf_counter()) if scope else time.perf_counter()


def route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return match.route if match is not None and match.route else UNMATCHED


class RequestMetricsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        started = started_at(request)
        response = self.get_response(request)
        self._record(request, response, time.perf_counter() - started)  # type: ignore[arg-type]
        return response  # type: ignore[return-value]

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        started = started_at(request)
        response = await self.get_response(request)  # type: ignore[misc]
        duration = time.perf_counter() - started
        await sync_to_async(self._record, thread_sensitive=False)(request, response, duration)
        return response

    @staticmethod
    def _record(request: HttpRequest, response: HttpResponseBase, duration: float) -> None:
        request_record(
            method=request.method or "", status=response.status_code, route=route_of(request), duration=duration
        )
