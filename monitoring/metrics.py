"""The Prometheus exposition of ``/metrics``: the dashboard's numbers, read at scrape time
through ``monitoring.selectors``, plus the request counters and latency histograms.

Every number is for the whole deployment (counters live in the shared store, business
numbers in the database), so scrape one web process, through the web Service, not each
pod. Money figures (reserves, liabilities) are floats here, as Prometheus requires; they
are for graphs and alerts, never for accounting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from monitoring import selectors
from monitoring.services import LATENCY_BUCKETS

logger = logging.getLogger(__name__)

PREFIX = "kootabase_"


def _gauge(name: str, doc: str, labels: list[str] | None = None, *, value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value, labels=labels)


def _orders() -> Iterator[Metric]:
    rate = selectors.orders_rate_latest()
    if rate is not None:
        yield _gauge("orders_per_minute", "Orders placed per minute (the latest per-minute sample).", value=rate)


def _trades() -> Iterator[Metric]:
    now = timezone.now()
    last = selectors.trades_per_minute(now=now, minutes=1).last_minute
    gauge = _gauge("trades_last_minute", "Trades in the last complete minute (1-minute candles).", ["market"])
    for symbol, count in sorted(last.items()):
        gauge.add_metric([symbol], count)
    yield gauge


def _matchers() -> Iterator[Metric]:
    rows = selectors.matcher_lag(now=timezone.now())
    pending = _gauge("matcher_pending_orders", "Orders placed and not yet taken by the matcher.", ["market"])
    oldest = _gauge("matcher_oldest_pending_seconds", "Age of the oldest pending order (0: none).", ["market"])
    heartbeat = _gauge("matcher_heartbeat_age_seconds", "Seconds since the matcher's last heartbeat.", ["market"])
    trades = CounterMetricFamily(PREFIX + "trades", "Trades made (the matcher's trade number).", labels=["market"])
    sequenced = CounterMetricFamily(
        PREFIX + "matcher_sequenced", "Orders and cancels the matcher has sequenced.", labels=["market"]
    )
    for row in rows:
        pending.add_metric([row.symbol], row.pending)
        oldest.add_metric([row.symbol], row.oldest_pending_age or 0.0)
        if row.heartbeat_age is not None:
            heartbeat.add_metric([row.symbol], row.heartbeat_age)
        trades.add_metric([row.symbol], row.last_trade_no)
        sequenced.add_metric([row.symbol], row.last_seq)
    yield from (pending, oldest, heartbeat, trades, sequenced)


def _work_queues() -> Iterator[Metric]:
    queues = selectors.work_queues()
    pending = queues.deposits_pending
    yield _gauge("deposits_pending", "Deposits seen on chain, waiting for their confirmations.", value=pending)
    withdrawals = _gauge("withdrawals", "Withdrawals not final, by status.", ["status"])
    for status, count in sorted(queues.withdrawals.items()):
        withdrawals.add_metric([status], count)
    yield withdrawals
    if queues.aml_open_cases is not None:
        yield _gauge("aml_open_cases", "AML review cases open.", value=queues.aml_open_cases)


def _reserves() -> Iterator[Metric]:
    report = selectors.reserves()
    coins = _gauge("reserve_coins", "Hot wallets plus unswept deposits, per currency.", ["currency"])
    liabilities = _gauge("user_liabilities", "Users' available plus locked balances, per currency.", ["currency"])
    ratio = _gauge("reserve_ratio", "Coins held / user liabilities, per currency.", ["currency"])
    for row in report.currencies:
        liabilities.add_metric([row.currency], float(row.liabilities))
        if row.coins is not None:
            coins.add_metric([row.currency], float(row.coins))
        if row.ratio is not None:
            ratio.add_metric([row.currency], float(row.ratio))
    yield from (coins, liabilities, ratio)


def _ledger_audit() -> Iterator[Metric]:
    audit = selectors.ledger_audit(now=timezone.now())
    if audit is None:
        return
    yield _gauge("ledger_audit_ok", "1 if the last ledger audit found every invariant held.", value=int(audit.ok))
    yield _gauge("ledger_audit_violations", "Violations found by the last ledger audit.", value=audit.violations)
    yield _gauge(
        "ledger_audit_finished_timestamp_seconds",
        "When the last ledger audit finished (Unix time).",
        value=audit.finished_at.timestamp(),
    )


def _celery() -> Iterator[Metric]:
    lengths = _gauge("celery_queue_length", "Messages waiting in a Celery queue.", ["queue"])
    for queue, length in selectors.celery_queue_lengths().items():
        if length is not None:
            lengths.add_metric([queue], length)
    yield lengths
    up = _gauge("celery_worker_up", "1 while the worker's heartbeat is recent.", ["worker"])
    age = _gauge("celery_worker_heartbeat_age_seconds", "Seconds since the worker's last heartbeat.", ["worker"])
    for worker in selectors.celery_workers(now=timezone.now()):
        up.add_metric([worker.hostname], int(worker.alive))
        age.add_metric([worker.hostname], worker.age)
    yield from (up, age)


def _websocket() -> Iterator[Metric]:
    count = selectors.websocket_connections()
    yield _gauge("websocket_connections", "Open WebSocket connections, all web processes.", value=count.connections)
    yield _gauge("websocket_processes", "Web processes that reported their connections.", value=count.processes)


def _http() -> Iterator[Metric]:
    totals = selectors.http_totals()
    requests = CounterMetricFamily(
        PREFIX + "http_requests", "HTTP requests answered, by method and status.", labels=["method", "status"]
    )
    for (method, status), count in sorted(totals.requests.items()):
        requests.add_metric([method, status], count)
    yield requests
    latency = HistogramMetricFamily(
        PREFIX + "http_request_duration_seconds", "Time to answer an HTTP request, by URL route.", labels=["route"]
    )
    bounds = [*(str(bound) for bound in LATENCY_BUCKETS), "+Inf"]
    for route, row in totals.latency.items():
        latency.add_metric([route], list(zip(bounds, row.buckets, strict=True)), row.sum_seconds)
    yield latency


SECTIONS: dict[str, Callable[[], Iterator[Metric]]] = {
    "orders": _orders,
    "trades": _trades,
    "matchers": _matchers,
    "work_queues": _work_queues,
    "reserves": _reserves,
    "ledger_audit": _ledger_audit,
    "celery": _celery,
    "websocket": _websocket,
    "http": _http,
}


class Collector:
    """Reads every section at scrape time; one that fails is reported as down, not fatal."""

    def collect(self) -> Iterator[Metric]:
        up = _gauge("monitoring_section_up", "1 if the section could be read at this scrape.", ["section"])
        for name, section in SECTIONS.items():
            try:
                metrics = list(section())
            except Exception:  # a broken source must not hide the others
                logger.warning("monitoring: cannot read %s for /metrics", name, exc_info=True)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from metrics
        yield up


def render() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)
