"""The web process runs at most WEB_MAX_CONCURRENT_REQUESTS requests at once under ASGI."""

import asyncio
import threading
import time

import httpx
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, JsonResponse
from django.urls import path

_state = {"running": 0, "peak": 0}
_lock = threading.Lock()


def slow_view(request: HttpRequest) -> JsonResponse:
    with _lock:
        _state["running"] += 1
        _state["peak"] = max(_state["peak"], _state["running"])
    time.sleep(0.05)
    with _lock:
        _state["running"] -= 1
    return JsonResponse({"ok": True})


urlpatterns = [path("slow", slow_view)]


def test_a_burst_waits_its_turn_instead_of_running_all_at_once(settings):
    settings.ROOT_URLCONF = __name__
    settings.WEB_MAX_CONCURRENT_REQUESTS = 2
    _state.update(running=0, peak=0)
    app = ASGIHandler()  # builds its middleware chain with the settings above

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            responses = await asyncio.gather(*(client.get("/slow") for _ in range(8)))
        return [response.status_code for response in responses]

    assert asyncio.run(burst()) == [200] * 8
    assert _state["peak"] == 2
