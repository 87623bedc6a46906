"""The Content-Security-Policy header: on every response, strict everywhere, and the pages the
app serves (admin, Swagger UI, ReDoc, the health dashboard) written so that it lets them work —
nothing from another origin, no inline script or style but what carries the response's nonce."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client

HEADER = "Content-Security-Policy"


def policy_of(response) -> dict[str, list[str]]:
    assert HEADER in response, f"no {HEADER} on {response.status_code} {response.get('Content-Type')}"
    directives = {}
    for part in response[HEADER].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class _Page(HTMLParser):
    """The tags of a page that the policy decides on."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[tuple[str, dict[str, str | None], str]] = []  # (tag, attrs, text) of <script>/<style>
        self.urls: list[str] = []  # every src/href of script, link, img, iframe, object, embed
        self.handlers: list[str] = []  # onclick="..." and the like, style="...", javascript: URLs
        self._open: tuple[str, dict[str, str | None]] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name, value in attrs:
            if name.startswith("on") or name == "style" or (value or "").strip().lower().startswith("javascript:"):
                self.handlers.append(f"<{tag} {name}={value!r}>")
        if tag in ("script", "link", "img", "iframe", "object", "embed"):
            url = attributes.get("src") or (attributes.get("href") if tag == "link" else None)
            if url:
                self.urls.append(url)
        if tag in ("script", "style") and not attributes.get("src"):
            self._open, self._text = (tag, attributes), []

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag == self._open[0]:
            self.inline.append((tag, self._open[1], "".join(self._text)))
            self._open = None


def assert_page_runs_under_its_policy(response) -> dict[str, list[str]]:
    """What a browser would refuse on this page under its own header: inline code without
    the response's nonce, event-handler or style attributes, resources from other origins."""
    policy = policy_of(response)
    page = _Page()
    page.feed(response.content.decode())
    nonces = {v[len("'nonce-") : -1] for key in ("script-src", "style-src") for v in policy[key] if "nonce-" in v}
    for tag, attrs, text in page.inline:
        if tag == "script" and attrs.get("type") == "application/json":
            continue  # data, never run
        assert attrs.get("nonce") in nonces, f"inline <{tag}> without the response's nonce: {text.strip()[:80]!r}"
    assert page.handlers == []
    foreign = [url for url in page.urls if re.match(r"^([a-z]+:)?//", url, re.IGNORECASE)]
    assert foreign == [], "everything loads from this origin"
    return policy


BASE = {
    "default-src": ["'self'"],
    "object-src": ["'none'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "img-src": ["'self'", "data:"],
}


def assert_base_policy(policy: dict[str, list[str]]) -> None:
    for name, values in BASE.items():
        assert policy[name] == values, name
    for name in ("script-src", "style-src"):
        assert policy[name][0] == "'self'"
        assert all(v == "'self'" or v.startswith("'nonce-") for v in policy[name]), policy[name]


@pytest.mark.django_db
def test_api_responses_carry_the_policy(auth_client, api_client):
    for response in (
        auth_client.get("/api/v1/me"),
        api_client.get("/api/v1/me"),  # an error response too
        api_client.get("/api/v1/no-such-thing"),
        Client().get("/healthz"),
    ):
        policy = policy_of(response)
        assert_base_policy(policy)
        assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]  # no nonce asked for
        assert "worker-src" not in policy


@pytest.mark.django_db
def test_the_admin_runs_under_the_policy(admin_client, admin_user):
    pages = (
        "/admin/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{admin_user.pk}/change/",
        "/admin/accounts/user/add/",
        "/admin/blockchain/withdrawaladdress/",
        "/admin/audit/auditevent/",
    )
    for path in pages:
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert_base_policy(assert_page_runs_under_its_policy(response))
    login = Client().get("/admin/login/")
    assert login.status_code == 200
    assert_base_policy(assert_page_runs_under_its_policy(login))


@pytest.mark.django_db
def test_swagger_ui_runs_under_the_policy(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    policy = assert_page_runs_under_its_policy(response)
    assert_base_policy(policy)
    page = _Page()
    page.feed(response.content.decode())
    assert page.inline == []  # its start-up script is a file of its own
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle(" in script.content
    assert b'"validatorUrl": null' in script.content  # no call out to the online validator


@pytest.mark.django_db
def test_redoc_runs_under_the_policy_with_its_nonce_and_worker(client):
    response = client.get("/api/redoc/")
    assert response.status_code == 200
    policy = assert_page_runs_under_its_policy(response)
    assert_base_policy(policy)
    assert policy["worker-src"] == ["'self'", "blob:"]  # its search worker, on this page only
    nonce = re.search(rb'<script src="[^"]*redoc-init\.js" nonce="([^"]+)"', response.content).group(1).decode()
    assert f"'nonce-{nonce}'" in policy["style-src"] and f"'nonce-{nonce}'" in policy["script-src"]
    assert b"fonts.googleapis.com" not in response.content
    again = client.get("/api/redoc/")
    assert policy_of(again)["style-src"] != policy["style-src"], "a fresh nonce per response"


def test_static_files_carry_the_policy(client):
    response = client.get("/static/kootabase/redoc-init.js")
    assert response.status_code == 200
    assert_base_policy(policy_of(response))


@pytest.mark.django_db
def test_the_health_dashboard_runs_under_the_policy(admin_client):
    response = admin_client.get("/admin/dashboard/")
    assert response.status_code == 200
    assert_base_policy(assert_page_runs_under_its_policy(response))
