"""Another user's order is invisible: every endpoint answers 404, exactly as for an id
that does not exist, and nothing changes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from orders.matcher import MarketMatcher

URL = "/api/v1/orders"


@pytest.fixture
def alices_order(alice_client):
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000", "quantity": "1"}
    return alice_client.post(URL, body).json()


@pytest.mark.parametrize("method", ["get", "delete"])
def test_someone_elses_order_is_not_found(bob_client, alices_order, unchanged, method):
    with unchanged():
        theirs = getattr(bob_client, method)(f"{URL}/{alices_order['id']}")
        missing = getattr(bob_client, method)(f"{URL}/{alices_order['id'] + 1000}")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert theirs.json()["code"] == "order_not_found"


def test_lists_show_only_mine(alice_client, bob_client, alices_order, unchanged):
    with unchanged():
        assert bob_client.get(URL).json()["results"] == []
        assert bob_client.delete(URL).json() == {"cancel_requested": []}
    assert [o["id"] for o in alice_client.get(URL).json()["results"]] == [alices_order["id"]]


def test_list_filters(alice_client, alices_order):
    assert len(alice_client.get(URL + "?status=open&market=ETH-USDT&side=buy").json()["results"]) == 1
    assert alice_client.get(URL + "?status=history").json()["results"] == []
    assert alice_client.get(URL + "?market=BTC-USDT").json()["results"] == []
    bad = alice_client.get(URL + "?status=nonsense")
    assert (bad.status_code, bad.json()["code"]) == (400, "status_invalid")


def test_cancel_all_in_an_unknown_market(alice_client, alices_order, unchanged):
    with unchanged():
        response = alice_client.delete(URL + "?market=NOPE-USDT")
    assert (response.status_code, response.json()["code"]) == (400, "unknown_market")


def _run_matcher_process() -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "KOOTABASE_VAR_DIR": str(settings.VAR_DIR),
        "DJANGO_SETTINGS_MODULE": "kootabase.settings_test",
    }
    if connection.vendor == "mysql":
        env["DATABASE_URL"] = f"mysql://root@127.0.0.1:3306/{connection.settings_dict['NAME']}"
    return subprocess.run(
        [sys.executable, "manage.py", "run_matcher", "--market", "ETH-USDT"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_matcher_process_exits_with_an_error(markets):
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        result = _run_matcher_process()
    finally:
        matcher.stop()
    assert result.returncode != 0
    assert "already running" in result.stderr


@pytest.mark.mariadb
def test_a_second_matcher_is_refused_by_the_named_lock(markets):
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        assert matcher.lock._connection is not None  # GET_LOCK, not the file lock
        result = _run_matcher_process()
    finally:
        matcher.stop()
    assert "already running" in result.stderr
