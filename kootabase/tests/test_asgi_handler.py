"""The web process runs requests on a fixed set of threads: at most
WEB_MAX_CONCURRENT_REQUESTS at once, each thread reused with its database connection."""

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.core import signals
from django.db import connection
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import get_script_prefix, path
from django.views.decorators.csrf import csrf_exempt

from kootabase.asgi_handler import PooledASGIHandler

_state = {"running": 0, "peak": 0}
_lock = threading.Lock()


def slow_view(request: HttpRequest) -> JsonResponse:
    with _lock:
        _state["running"] += 1
        _state["peak"] = max(_state["peak"], _state["running"])
    time.sleep(0.05)
    with _lock:
        _state["running"] -= 1
    return JsonResponse({"thread": threading.get_ident()})


def connection_view(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()" if connection.vendor == "mysql" else "SELECT 1")
        (connection_id,) = cursor.fetchone()
    return JsonResponse({"thread": threading.get_ident(), "connection": connection_id})


def thread_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"thread": threading.current_thread().name})


def streaming_view(request: HttpRequest) -> StreamingHttpResponse:
    async def parts() -> AsyncIterator[str]:
        for i in range(1000):
            yield f"{i},"

    return StreamingHttpResponse(parts())


def loop_view(request: HttpRequest) -> JsonResponse:
    async def which_loop() -> int:
        return id(asyncio.get_running_loop())

    return JsonResponse({"loop": async_to_sync(which_loop)()})


def echo_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"body": request.body.decode(), "path": request.path, "script": get_script_prefix()})


urlpatterns = [
    path("slow", slow_view),
    path("connection", connection_view),
    path("thread", thread_view),
    path("streaming", streaming_view),
    path("echo", csrf_exempt(echo_view)),
    path("loop", loop_view),
]


def _get(app: PooledASGIHandler, url: str, times: int, concurrently: bool) -> list[dict]:
    async def run() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            if concurrently:
                responses = await asyncio.gather(*(client.get(url) for _ in range(times)))
            else:
                responses = [await client.get(url) for _ in range(times)]
        assert [r.status_code for r in responses] == [200] * times
        return [r.json() for r in responses]

    return asyncio.run(run())


def test_a_burst_waits_its_turn_instead_of_running_all_at_once(settings):
    settings.ROOT_URLCONF = __name__
    settings.WEB_MAX_CONCURRENT_REQUESTS = 2
    _state.update(running=0, peak=0)
    answers = _get(PooledASGIHandler(), "/slow", 8, concurrently=True)
    assert _state["peak"] == 2
    assert len({a["thread"] for a in answers}) == 2  # the burst ran on the two pooled threads


def test_a_cancelled_request_finishes_on_its_thread_before_the_next_request_starts(settings):
    """A request whose task is cancelled (the server shutting down, say) cannot stop its
    synchronous part; the thread it ran on takes the next request only after it ends, so
    one thread (and its connection) never runs two requests at once."""
    settings.ROOT_URLCONF = __name__
    settings.WEB_MAX_CONCURRENT_REQUESTS = 1
    _state.update(running=0, peak=0)
    app = PooledASGIHandler()

    async def run() -> tuple[float, list[dict]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            first = asyncio.ensure_future(client.get("/slow"))
            while _state["running"] == 0:
                await asyncio.sleep(0.001)
            first.cancel()
            started = time.perf_counter()
            second = await client.get("/slow")
            return time.perf_counter() - started, [second.json()]

    waited, [second] = asyncio.run(run())
    assert _state["peak"] == 1  # never both at once
    assert waited >= 0.09  # the rest of the first one's 0.05 s, then its own
    assert second["thread"]


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_requests_reuse_their_thread_and_its_database_connection(settings):
    settings.ROOT_URLCONF = __name__
    settings.WEB_MAX_CONCURRENT_REQUESTS = 4
    assert connection.settings_dict["CONN_MAX_AGE"] > 0  # persistent connections: the production default
    answers = _get(PooledASGIHandler(), "/connection", 5, concurrently=False)
    assert len({a["thread"] for a in answers}) == 1  # one after another: the same (last used) thread
    assert len({a["connection"] for a in answers}) == 1  # and the same connection, not one per request


def test_the_middleware_chain_and_the_view_run_as_one_synchronous_call_on_a_pooled_thread(settings):
    settings.ROOT_URLCONF = __name__
    handler = PooledASGIHandler()
    assert not asyncio.iscoroutinefunction(handler._middleware_chain)  # no hop per middleware
    [answer] = _get(handler, "/thread", 1, concurrently=False)
    assert answer["thread"].startswith("web-request")


def test_async_to_sync_in_a_request_runs_on_the_servers_event_loop(settings):
    """As under Django's own handler (``sync_to_async``): a coroutine a request runs
    through ``async_to_sync`` (the readiness probe's round trip through the channel layer)
    uses the server's loop and its connections, not a new loop per call."""
    settings.ROOT_URLCONF = __name__
    app = PooledASGIHandler()

    async def run() -> tuple[int, list[int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answers = [(await client.get("/loop")).json()["loop"] for _ in range(3)]
        return id(asyncio.get_running_loop()), answers

    server_loop, answers = asyncio.run(run())
    assert answers == [server_loop] * 3


def test_errors_still_get_the_projects_error_format(settings):
    settings.ROOT_URLCONF = "kootabase.urls"

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=PooledASGIHandler())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/api/v1/no-such-thing")

    response = asyncio.run(run())
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_a_request_starts_and_finishes_once_on_its_thread_and_streams_whole(settings):
    settings.ROOT_URLCONF = __name__
    seen: list[tuple[str, str]] = []

    def started(**kwargs: object) -> None:
        seen.append(("started", threading.current_thread().name))

    def finished(**kwargs: object) -> None:
        seen.append(("finished", threading.current_thread().name))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:

        async def run() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=PooledASGIHandler(), root_path="/prefix")
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return [await client.post("/prefix/echo", content=b"x" * 5000), await client.get("/prefix/streaming")]

        echo, streaming = asyncio.run(run())
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert echo.json() == {"body": "x" * 5000, "path": "/prefix/echo", "script": "/prefix/"}
    assert streaming.text == "".join(f"{i}," for i in range(1000))
    assert [event for event, _ in seen] == ["started", "finished"] * 2
    assert all(thread.startswith("web-request") for _, thread in seen)


def test_the_web_process_keeps_what_start_up_loaded_out_of_the_collectors_walk():
    """Loading the ASGI application imports the views and freezes what is loaded, so a
    full collection does not walk it (a pause of every request in the process)."""
    script = (
        "import gc, kootabase.asgi\n"
        "from orders.api.views import OrderBatchView\n"
        "assert gc.get_freeze_count() > 0\n"
        "assert not any(o is OrderBatchView for o in gc.get_objects())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
