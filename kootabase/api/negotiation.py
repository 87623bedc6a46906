"""Content negotiation remembered per Accept header.

DRF parses the request's ``Accept`` header and ranks its media types on every request;
for an API whose clients send the same few headers (``*/*``, ``application/json``) that
was a few percent of a web process's work on an order. The choice depends only on the
view's renderer classes, the header and the ``?format=`` override, so it is remembered
for those (a bounded number of distinct headers; a refusal is never remembered).
"""

from __future__ import annotations

import threading
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

REMEMBERED_MAX = 256

_chosen: dict[tuple[Any, ...], tuple[int, str]] = {}
_lock = threading.Lock()


class RememberedContentNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        format_ = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        key = (tuple(type(r) for r in renderers), request.META.get("HTTP_ACCEPT", "*/*"), format_)
        chosen = _chosen.get(key)
        if chosen is None:
            renderer, media_type = super().select_renderer(request, renderers, format_suffix)
            chosen = (renderers.index(renderer), media_type)
            with _lock:
                if len(_chosen) >= REMEMBERED_MAX:
                    _chosen.clear()
                _chosen[key] = chosen
        return renderers[chosen[0]], chosen[1]
