"""Content negotiation remembered per Accept header gives DRF's own answer, every time."""

from __future__ import annotations

import pytest
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from kootabase.api import negotiation
from kootabase.api.negotiation import RememberedContentNegotiation

ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "application/json; indent=4",
    "text/html",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "application/*",
    "image/png",
    "application/json;q=0.1, text/html",
]
RENDERER_SETS = [
    [JSONRenderer()],
    [JSONRenderer(), BrowsableAPIRenderer()],
    [BrowsableAPIRenderer(), JSONRenderer()],
    [TemplateHTMLRenderer(), JSONRenderer()],
]


def choose(negotiator, accept, renderers, query=""):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(f"/x{query}", **headers))
    try:
        renderer, media_type = negotiator.select_renderer(request, renderers)
    except (NotAcceptable, Http404) as exc:
        return type(exc).__name__
    return renderers.index(renderer), media_type


@pytest.mark.parametrize("renderers", RENDERER_SETS, ids=range(len(RENDERER_SETS)))
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api", "?format=xml"])
def test_the_remembered_choice_is_drfs(renderers, query):
    negotiation._chosen.clear()
    for _ in range(2):  # the first time worked out, the second remembered
        for accept in ACCEPTS:
            expected = choose(DefaultContentNegotiation(), accept, renderers, query)
            assert choose(RememberedContentNegotiation(), accept, renderers, query) == expected


def test_what_is_remembered_stays_bounded(monkeypatch):
    monkeypatch.setattr(negotiation, "REMEMBERED_MAX", 4)
    negotiation._chosen.clear()
    for n in range(10):
        choose(RememberedContentNegotiation(), f"application/json; v={n}", [JSONRenderer()])
        assert len(negotiation._chosen) <= 4
