"""The dashboard reads no growing table in full: the number of its queries does not grow
with the data, and each query on a growing table is an indexed search (its plan says so)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from marketdata.tests.conftest import drain
from monitoring.selectors import dashboard_data
from monitoring.services import order_sample_take, worker_heartbeat
from monitoring.tests.test_numbers import place
from wallets.services import ledger_audit_run
from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# Tables that grow with the business; every query touching one must use an index.
GROWING = (
    "orders_order",
    "orders_trade",
    "marketdata_candle",
    "blockchain_deposit",
    "blockchain_withdrawal",
    "wallets_ledgeraccount",
    "wallets_ledgerleg",
    "wallets_journalentry",
    "aml_case",
    "monitoring_ordersample",
)


@contextmanager
def statements() -> Iterator[list[tuple[str, Any]]]:
    captured: list[tuple[str, Any]] = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        yield captured


def explain(sql: str, params: Any) -> list[str]:
    """The plan's lines, as ``"<table> <how>"``."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return [row[3] for row in cursor.fetchall()]
        cursor.execute(f"EXPLAIN {sql}", params)
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return [f"{row['table']} type={row['type']} possible_keys={row['possible_keys']}" for row in rows]


def assert_indexed(sql: str, params: Any) -> None:
    for line in explain(sql, params):
        for table in GROWING:
            if connection.vendor == "sqlite":
                # "SEARCH t USING INDEX ..." or "... USING INTEGER PRIMARY KEY": an indexed range.
                # "SCAN t" (the table) or "SCAN t USING [COVERING] INDEX" (a whole index): a full scan.
                assert not line.startswith(f"SCAN {table}"), (line, sql)
            elif line.startswith(f"{table} "):
                # On a test-sized table MySQL may still prefer a scan; an index it could use must exist.
                assert "type=ALL" not in line or "possible_keys=None" not in line, (line, sql)
                assert "type=index " not in line, (line, sql)


def business(traders: list, rounds: int) -> None:
    """``rounds`` rounds of trading on both markets, with orders left pending, an audit run
    and samples."""
    seller, buyer = traders
    for i in range(rounds):
        place(seller, "ETH-USDT", "sell", "0.01", str(2000 + i))
        place(buyer, "ETH-USDT", "buy", "0.01", str(2000 + i))
        place(seller, "BTC-USDT", "sell", "0.001", str(30000 + i))
        place(buyer, "BTC-USDT", "buy", "0.001", str(30000 + i))
    drain("ETH-USDT")
    drain("BTC-USDT")
    for i in range(rounds):  # waiting for a matcher
        place(buyer, "ETH-USDT", "buy", "0.01", str(1000 + i))
        place(buyer, "BTC-USDT", "buy", "0.001", str(10000 + i))
    ledger_audit_run()
    order_sample_take(now=timezone.now() + timedelta(minutes=rounds))


def dashboard_statements() -> list[tuple[str, Any]]:
    cache.clear()  # the reserves too, not their cached copy
    with statements() as captured:
        dashboard_data()
    return captured


def test_the_dashboard_reads_a_bounded_number_of_indexed_queries(alice, bob, chain, network):
    worker_heartbeat(hostname="celery@worker-a", pid=1, queues=["default"])
    business([alice, bob], rounds=2)
    small = dashboard_statements()

    UserFactory.create_batch(20)
    business([alice, bob], rounds=15)
    large = dashboard_statements()

    assert len(large) == len(small), [sql for sql, _ in large]
    assert len(small) <= 25
    for sql, params in large:
        assert_indexed(sql, params)


def test_the_page_itself_stays_within_the_bound(accountant_client, alice, bob):
    business([alice, bob], rounds=1)
    cache.clear()
    with statements() as captured:
        assert accountant_client.get("/admin/dashboard/").status_code == 200
    page = len(captured)
    business([alice, bob], rounds=10)
    cache.clear()
    with statements() as captured:
        assert accountant_client.get("/admin/dashboard/").status_code == 200
    assert len(captured) == page
    assert page <= 40  # sessions, the user, permissions, then the dashboard's own
