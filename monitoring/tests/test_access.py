"""Who sees the dashboard, and /metrics only for the holder of the token."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from accounts.tests.helpers import admin_login, staff_member

pytestmark = pytest.mark.django_db

DASHBOARD, DATA, METRICS = "/admin/dashboard/", "/admin/dashboard/data", "/metrics"
TOKEN = "a-long-random-metrics-token"


def test_staff_with_the_permission_see_the_page_and_its_numbers(accountant_client, alice):
    page = accountant_client.get(DASHBOARD)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'src="/static/monitoring/chart.umd.js"' in html and 'src="/static/monitoring/dashboard.js"' in html
    assert "<script>" not in html  # no inline script: the page works under a strict CSP
    assert 'data-url="/admin/dashboard/data"' in html
    assert 'data-path="matchers|ETH-USDT|pending"' in html

    data = accountant_client.get(DATA)
    assert data.status_code == 200 and data["Content-Type"] == "application/json"
    body = data.json()
    assert set(body) >= {"series", "last_minute", "matchers", "work_queues", "reserves", "ledger_audit", "celery"}
    assert body["errors"] == {}
    assert len(body["series"]["minutes"]) == 60


def test_the_admin_index_links_the_dashboard_for_those_who_may_see_it(accountant_client):
    assert f'href="{DASHBOARD}"' in accountant_client.get("/admin/").content.decode()
    support = admin_login(Client(), staff_member("support@example.com", "support"))
    assert f'href="{DASHBOARD}"' not in support.get("/admin/").content.decode()


@pytest.mark.parametrize("url", [DASHBOARD, DATA])
def test_staff_without_the_permission_are_refused(url):
    support = admin_login(Client(), staff_member("support@example.com", "support"))
    assert support.get(url).status_code == 403
    no_role = admin_login(Client(), staff_member("nobody@example.com"))
    assert no_role.get(url).status_code == 403


@pytest.mark.parametrize("url", [DASHBOARD, DATA])
def test_non_staff_and_anonymous_are_sent_to_log_in(url, user):
    trader = Client()
    trader.force_login(user)
    for client in (trader, Client()):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", [DASHBOARD, DATA])
def test_staff_without_a_second_factor_are_sent_to_log_in(url):
    """The permission alone is not enough: like every back-office page, 2FA first."""
    client = Client()
    client.force_login(staff_member("accountant@example.com", "accountant"))
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_metrics_is_404_without_a_configured_token(settings, client):
    settings.METRICS_TOKEN = ""
    assert client.get(METRICS).status_code == 404
    assert client.get(METRICS, HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert client.get(METRICS, HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_metrics_is_404_without_or_with_a_wrong_token(settings, client):
    settings.METRICS_TOKEN = TOKEN
    unknown = client.get("/no-such-path")
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong"},
        {"HTTP_AUTHORIZATION": TOKEN},
        {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"},
    ):
        response = client.get(METRICS, **headers)
        assert response.status_code == 404
        # The same answer as a path that does not exist.
        assert (response["Content-Type"], response.content) == (unknown["Content-Type"], unknown.content)
    assert client.post(METRICS).status_code == 404  # no CSRF failure gives the endpoint away


def test_metrics_with_the_token(settings, client, alice):
    settings.METRICS_TOKEN = TOKEN
    response = client.get(METRICS, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "kootabase_matcher_pending_orders",
        "kootabase_trades",
        "kootabase_withdrawals",
        "kootabase_celery_queue_length",
        "kootabase_websocket_connections",
        "kootabase_http_requests",
        "kootabase_http_request_duration_seconds",
        "kootabase_monitoring_section_up",
    } <= set(families)
    up = {sample.labels["section"]: sample.value for sample in families["kootabase_monitoring_section_up"].samples}
    assert up and all(value == 1 for value in up.values()), up
    pending = {s.labels["market"]: s.value for s in families["kootabase_matcher_pending_orders"].samples}
    assert pending == {"BTC-USDT": 0, "ETH-USDT": 0}
    assert client.post(METRICS, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405
