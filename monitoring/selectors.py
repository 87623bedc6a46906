"""Every number of the health dashboard and of ``/metrics``, read one way for both.

Each read is an indexed range, a primary-key lookup or a maintained aggregate, never a
scan of a growing table (``monitoring/tests/test_queries.py`` checks the plans):

- orders per minute: ``OrderSample`` rows (``monitoring.services.order_sample_take``);
- trades per minute: the 1-minute candles the matcher maintains (``trade_count``), off
  their unique (market, interval, open_time) index;
- matcher lag: per market the pending orders, counted on the (market, status, id) index,
  the oldest one's age (a primary-key lookup) and ``MatcherState`` (heartbeat, sequence);
- deposits pending: the (network, status, block_number) index; withdrawals by status:
  the (status, id) index; AML cases open: the ``aml`` app's (status, id) index, when the
  app is installed;
- reserves: ``blockchain.selectors.asset_reserves`` (the node's hot-wallet balances and
  ``user_liabilities``) summed per currency, cached for ``RESERVES_CACHE_SECONDS``: it asks
  the nodes and sums every user balance of a currency, too much for every page load;
- the last ledger audit: ``wallets.selectors.audit_run_latest``;
- Celery: queue lengths from the broker (a passive declare: ``LLEN`` on Redis, the message
  count on RabbitMQ, the message files of the embedded file broker), workers from their
  heartbeat records;
- WebSocket connections and HTTP requests: the shared store (``monitoring.store``).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any, TypeVar

from django.apps import apps
from django.core.cache import cache
from django.db.models import Count, Min
from django.utils import timezone

from monitoring.models import OrderSample
from monitoring.services import (
    HTTP_DURATION_BUCKETS,
    HTTP_DURATION_SUM,
    HTTP_MINUTE,
    HTTP_REQUESTS,
    LATENCY_BUCKETS,
    WEBSOCKET,
    WORKERS,
    request_counts_flush,
)
from monitoring.store import get_store
from wallets.models import MONEY

logger = logging.getLogger(__name__)

WINDOW_MINUTES = 60  # the charts' span
WORKER_ALIVE_WITHIN = timedelta(seconds=60)  # a worker writes its record every 10 s
RESERVES_CACHE_KEY = "monitoring:reserves"
RESERVES_CACHE_SECONDS = 60
RATIO_QUANTUM = Decimal("0.0001")

T = TypeVar("T")


def window(*, now: datetime, minutes: int = WINDOW_MINUTES) -> list[datetime]:
    """The last ``minutes`` complete minutes before ``now``, oldest first."""
    end = now.replace(second=0, microsecond=0)
    return [end - timedelta(minutes=minutes - i) for i in range(minutes)]


# --- orders and trades ----------------------------------------------------------------


def orders_per_minute(*, now: datetime, minutes: int = WINDOW_MINUTES) -> list[float | None]:
    """Orders placed in each minute of the window (``None``: no sample covers it).

    A sample taken at minute M counts the orders since the previous sample, that is the
    ``minutes`` minutes before M; after a gap its count is spread evenly over them."""
    labels = window(now=now, minutes=minutes)
    values: dict[datetime, float] = {}
    samples = OrderSample.objects.filter(
        minute__gt=labels[0], minute__lte=labels[-1] + timedelta(minutes=1), orders__isnull=False
    ).values_list("minute", "orders", "minutes")
    for minute, orders, span in samples:
        span = max(span or 1, 1)
        for k in range(1, span + 1):
            values[minute - timedelta(minutes=k)] = orders if span == 1 else round(orders / span, 2)
    return [values.get(label) for label in labels]


def orders_rate_latest() -> float | None:
    """Orders per minute according to the latest sample that counted any."""
    sample = OrderSample.objects.filter(orders__isnull=False).order_by("-minute").first()
    if sample is None:
        return None
    return sample.orders / max(sample.minutes or 1, 1)


@dataclass(frozen=True)
class Trades:
    per_minute: list[int]  # all markets, one value per minute of the window
    last_minute: dict[str, int]  # by market symbol: the last complete minute


def trades_per_minute(*, now: datetime, minutes: int = WINDOW_MINUTES) -> Trades:
    from marketdata.models import Candle
    from orders.models import Market

    labels = window(now=now, minutes=minutes)
    symbols = dict(Market.objects.values_list("id", "symbol"))
    totals: dict[datetime, int] = defaultdict(int)
    last: dict[str, int] = dict.fromkeys(symbols.values(), 0)
    rows = Candle.objects.filter(
        market_id__in=list(symbols), interval="1m", open_time__gte=labels[0], open_time__lte=labels[-1]
    ).values_list("market_id", "open_time", "trade_count")
    for market_id, open_time, count in rows:
        totals[open_time] += count
        if open_time == labels[-1]:
            last[symbols[market_id]] = count
    return Trades(per_minute=[totals.get(label, 0) for label in labels], last_minute=last)


# --- matchers -------------------------------------------------------------------------


@dataclass(frozen=True)
class MatcherLag:
    symbol: str
    status: str
    pending: int
    oldest_pending_age: float | None  # seconds
    heartbeat_age: float | None  # seconds since the matcher's last heartbeat
    owner: str
    last_seq: int
    last_trade_no: int


def matcher_lag(*, now: datetime) -> list[MatcherLag]:
    """Per market: the orders its matcher has not taken yet and how long the oldest waits."""
    from orders.models import Market, MatcherState, Order, OrderStatus

    markets = list(Market.objects.order_by("symbol").values_list("id", "symbol", "status"))
    ids = [market_id for market_id, _, _ in markets]
    pending = {
        row["market_id"]: (row["count"], row["first"])
        for row in Order.objects.filter(market_id__in=ids, status=OrderStatus.PENDING)
        .order_by()
        .values("market_id")
        .annotate(count=Count("id"), first=Min("id"))
    }
    oldest = dict(
        Order.objects.filter(id__in=[first for _, first in pending.values()])
        .order_by()
        .values_list("market_id", "created_at")
    )
    states = {state.market_id: state for state in MatcherState.objects.filter(market_id__in=ids)}
    rows = []
    for market_id, symbol, status in markets:
        state = states.get(market_id)
        heartbeat = state.heartbeat_at if state else None
        created = oldest.get(market_id)
        rows.append(
            MatcherLag(
                symbol=symbol,
                status=status,
                pending=pending.get(market_id, (0, None))[0],
                oldest_pending_age=_age(now, created),
                heartbeat_age=_age(now, heartbeat),
                owner=state.owner if state else "",
                last_seq=state.last_seq if state else 0,
                last_trade_no=state.last_trade_no if state else 0,
            )
        )
    return rows


def _age(now: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else round(max((now - moment).total_seconds(), 0.0), 1)


# --- deposits, withdrawals, reviews ---------------------------------------------------


@dataclass(frozen=True)
class Queues:
    deposits_pending: int
    withdrawals: dict[str, int]  # every status that is not final, by status
    aml_open_cases: int | None  # None: the aml app is not installed

    @property
    def withdrawals_in_review(self) -> int:
        return self.withdrawals.get("review", 0)

    @property
    def withdrawals_pending(self) -> int:
        """On their way out: not final and not waiting for a reviewer."""
        return sum(count for status, count in self.withdrawals.items() if status != "review")


def work_queues() -> Queues:
    from blockchain.models import WITHDRAWAL_FINAL, Deposit, DepositStatus, Network, Withdrawal, WithdrawalStatus

    networks = list(Network.objects.values_list("id", flat=True))
    deposits = Deposit.objects.filter(network_id__in=networks, status=DepositStatus.PENDING).count()
    open_statuses = [status for status in WithdrawalStatus.values if status not in WITHDRAWAL_FINAL]
    counts = dict(
        Withdrawal.objects.filter(status__in=open_statuses)
        .order_by()
        .values("status")
        .annotate(count=Count("id"))
        .values_list("status", "count")
    )
    withdrawals = {status: counts.get(status, 0) for status in open_statuses}
    return Queues(deposits_pending=deposits, withdrawals=withdrawals, aml_open_cases=aml_open_cases())


def aml_open_cases() -> int | None:
    """Open review cases of the ``aml`` app, read only when the app is installed."""
    if not apps.is_installed("aml"):
        return None
    case = apps.get_model("aml", "Case")
    return case.objects.filter(status="open").count()


# --- reserves -------------------------------------------------------------------------


@dataclass(frozen=True)
class AssetHolding:
    network: str
    hot_wallet: Decimal | None  # None: the node did not answer
    unswept: Decimal


@dataclass(frozen=True)
class CurrencyReserve:
    """The coins the platform holds in a currency (hot wallets plus unswept deposits, on
    every network) against what it owes its users; ``ratio`` = coins / liabilities."""

    currency: str
    coins: Decimal | None  # None: a node did not answer
    liabilities: Decimal
    assets: list[AssetHolding] = field(default_factory=list)

    @property
    def ratio(self) -> Decimal | None:
        if self.coins is None or not self.liabilities:
            return None
        with localcontext(prec=60):  # a quotient, rounded down to RATIO_QUANTUM (MONEY traps any rounding)
            return (self.coins / self.liabilities).quantize(RATIO_QUANTUM, rounding=ROUND_DOWN)


@dataclass(frozen=True)
class Reserves:
    as_of: datetime
    currencies: list[CurrencyReserve]


def reserves(*, fresh: bool = False) -> Reserves:
    """``blockchain.selectors.asset_reserves`` per currency, cached ``RESERVES_CACHE_SECONDS``."""
    cached = None if fresh else cache.get(RESERVES_CACHE_KEY)
    if cached is not None:
        return _reserves_from_cache(cached)
    from blockchain.selectors import asset_reserves

    by_currency: dict[str, dict[str, Any]] = {}
    for row in asset_reserves():
        code = row.asset.currency.code
        entry = by_currency.setdefault(code, {"liabilities": row.liabilities, "assets": []})
        entry["assets"].append((row.asset.network.name, row.hot_wallet, row.unswept))
    as_of = timezone.now()
    cache.set(RESERVES_CACHE_KEY, (as_of, by_currency), RESERVES_CACHE_SECONDS)
    return _reserves_from_cache((as_of, by_currency))


def _reserves_from_cache(cached: tuple[datetime, dict[str, dict[str, Any]]]) -> Reserves:
    as_of, by_currency = cached
    currencies = []
    for code in sorted(by_currency):
        entry = by_currency[code]
        assets = [AssetHolding(network, held, unswept) for network, held, unswept in entry["assets"]]
        coins: Decimal | None = None
        if all(asset.hot_wallet is not None for asset in assets):
            with localcontext(MONEY):
                coins = sum((asset.hot_wallet + asset.unswept for asset in assets), Decimal(0))  # type: ignore[operator]
        currencies.append(CurrencyReserve(code, coins, entry["liabilities"], assets))
    return Reserves(as_of=as_of, currencies=currencies)


# --- ledger audit ---------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerAudit:
    ok: bool
    finished_at: datetime
    age: float  # seconds
    violations: int
    accounts_checked: int


def ledger_audit(*, now: datetime) -> LedgerAudit | None:
    from wallets.selectors import audit_run_latest

    run = audit_run_latest()
    if run is None:
        return None
    return LedgerAudit(
        ok=run.ok,
        finished_at=run.finished_at,
        age=_age(now, run.finished_at) or 0.0,
        violations=run.violations,
        accounts_checked=run.accounts_checked,
    )


# --- Celery ---------------------------------------------------------------------------


def celery_queue_lengths() -> dict[str, int | None]:
    """Messages waiting in each queue of ``kootabase.celery.QUEUES`` (``None``: the broker did
    not answer). A queue the broker does not know yet holds nothing."""
    from kombu.exceptions import ChannelError

    from kootabase.celery import QUEUES
    from kootabase.celery import app as celery_app

    lengths: dict[str, int | None] = dict.fromkeys(QUEUES)
    try:
        with celery_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            for name in QUEUES:
                channel = conn.channel()
                try:
                    lengths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except (ChannelError, *conn.channel_errors):
                    lengths[name] = 0
                finally:
                    with contextlib.suppress(Exception):  # a channel the broker already closed
                        channel.close()
    except Exception:  # an unreachable broker is a reading, not an error of the page
        logger.warning("monitoring: cannot read the Celery queue lengths", exc_info=True)
    return lengths


@dataclass(frozen=True)
class Worker:
    hostname: str
    pid: int
    queues: list[str]
    last_seen: datetime
    age: float  # seconds since its last record

    @property
    def alive(self) -> bool:
        return self.age <= WORKER_ALIVE_WITHIN.total_seconds()


def celery_workers(*, now: datetime) -> list[Worker]:
    workers = []
    for hostname, record in sorted(get_store().presence(WORKERS).items()):
        seen = datetime.fromisoformat(record["at"])
        workers.append(Worker(hostname, record["pid"], record["queues"], seen, _age(now, seen) or 0.0))
    return workers


# --- WebSocket ------------------------------------------------------------------------


@dataclass(frozen=True)
class WebsocketConnections:
    connections: int
    processes: int  # web processes that published a count recently


def websocket_connections() -> WebsocketConnections:
    records = get_store().presence(WEBSOCKET)
    return WebsocketConnections(sum(int(r["connections"]) for r in records.values()), len(records))


# --- HTTP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpMinute:
    requests: int
    errors_4xx: int
    errors_5xx: int
    latency_avg_ms: float | None


def http_per_minute(*, now: datetime, minutes: int = WINDOW_MINUTES) -> list[HttpMinute]:
    labels = window(now=now, minutes=minutes)
    names = [HTTP_MINUTE.format(minute=int(label.timestamp() // 60)) for label in labels]
    request_counts_flush()  # this process's own counts too, not a second later
    counters = get_store().counters(names)
    rows = []
    for name in names:
        fields = counters[name]
        requests = fields.get("requests", 0)
        rows.append(
            HttpMinute(
                requests=requests,
                errors_4xx=fields.get("4xx", 0),
                errors_5xx=fields.get("5xx", 0),
                latency_avg_ms=round(fields.get("duration_us", 0) / requests / 1000, 2) if requests else None,
            )
        )
    return rows


@dataclass(frozen=True)
class RouteLatency:
    buckets: list[int]  # cumulative counts for LATENCY_BUCKETS, then +Inf (= the count)
    sum_seconds: float

    @property
    def count(self) -> int:
        return self.buckets[-1]


@dataclass(frozen=True)
class HttpTotals:
    requests: dict[tuple[str, str], int]  # (method, status) -> requests since the counters began
    latency: dict[str, RouteLatency]  # by route


def http_totals() -> HttpTotals:
    request_counts_flush()  # this process's own counts too, not a second later
    counters = get_store().counters([HTTP_REQUESTS, HTTP_DURATION_BUCKETS, HTTP_DURATION_SUM])
    requests = {}
    for key, count in counters[HTTP_REQUESTS].items():
        method, _, status = key.partition(" ")
        requests[(method, status)] = count
    per_bucket: dict[str, list[int]] = defaultdict(lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    for key, count in counters[HTTP_DURATION_BUCKETS].items():
        index, _, route = key.partition(" ")
        per_bucket[route][int(index)] += count
    latency = {}
    for route, counts in sorted(per_bucket.items()):
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running)
        latency[route] = RouteLatency(cumulative, counters[HTTP_DURATION_SUM].get(route, 0) / 1_000_000)
    return HttpTotals(requests=requests, latency=latency)


# --- the dashboard --------------------------------------------------------------------


def _guarded(section: str, read: Callable[[], T], errors: dict[str, str]) -> T | None:
    """One section that cannot be read (a store or node down) leaves the others readable."""
    try:
        return read()
    except Exception as exc:  # reported on the page instead of failing it
        logger.warning("monitoring: cannot read %s", section, exc_info=True)
        errors[section] = f"{exc.__class__.__name__}: {exc}"
        return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.normalize():f}"


def dashboard_data(*, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready values (decimals as strings, times
    ISO-8601 UTC, durations in seconds). A section that could not be read is ``None`` and
    named in ``errors``."""
    now = now or timezone.now()
    errors: dict[str, str] = {}
    labels = window(now=now)
    orders = _guarded("orders", lambda: orders_per_minute(now=now), errors)
    trades = _guarded("trades", lambda: trades_per_minute(now=now), errors)
    http = _guarded("http", lambda: http_per_minute(now=now), errors)
    matchers = _guarded("matchers", lambda: matcher_lag(now=now), errors)
    queues = _guarded("work_queues", work_queues, errors)
    reserve = _guarded("reserves", reserves, errors)
    audit = _guarded("ledger_audit", lambda: ledger_audit(now=now), errors)
    workers = _guarded("celery_workers", lambda: celery_workers(now=now), errors)
    websocket = _guarded("websocket", websocket_connections, errors)
    return {
        "generated_at": _iso(now),
        "series": {
            "minutes": [label.strftime("%H:%M") for label in labels],
            "orders": orders,
            "trades": trades.per_minute if trades else None,
            "requests": [row.requests for row in http] if http else None,
            "errors_4xx": [row.errors_4xx for row in http] if http else None,
            "errors_5xx": [row.errors_5xx for row in http] if http else None,
            "latency_avg_ms": [row.latency_avg_ms for row in http] if http else None,
        },
        "last_minute": {
            "minute": _iso(labels[-1]),
            "orders": orders[-1] if orders else None,
            "trades": sum(trades.last_minute.values()) if trades else None,
            "trades_by_market": trades.last_minute if trades else None,
            "requests": http[-1].requests if http else None,
            "errors_4xx": http[-1].errors_4xx if http else None,
            "errors_5xx": http[-1].errors_5xx if http else None,
            "latency_avg_ms": http[-1].latency_avg_ms if http else None,
        },
        "matchers": None
        if matchers is None
        else {
            row.symbol: {
                "status": row.status,
                "pending": row.pending,
                "oldest_pending_age": row.oldest_pending_age,
                "heartbeat_age": row.heartbeat_age,
                "owner": row.owner,
                "last_seq": row.last_seq,
                "last_trade_no": row.last_trade_no,
            }
            for row in matchers
        },
        "websocket": None
        if websocket is None
        else {"connections": websocket.connections, "processes": websocket.processes},
        "work_queues": None
        if queues is None
        else {
            "deposits_pending": queues.deposits_pending,
            "withdrawals_pending": queues.withdrawals_pending,
            "withdrawals_in_review": queues.withdrawals_in_review,
            "withdrawals_by_status": queues.withdrawals,
            "aml_open_cases": queues.aml_open_cases,
        },
        "reserves": None
        if reserve is None
        else {
            "as_of": _iso(reserve.as_of),
            "currencies": {
                row.currency: {
                    "coins": _decimal(row.coins),
                    "liabilities": _decimal(row.liabilities),
                    "ratio": _decimal(row.ratio),
                    "assets": [
                        {"network": a.network, "hot_wallet": _decimal(a.hot_wallet), "unswept": _decimal(a.unswept)}
                        for a in row.assets
                    ],
                }
                for row in reserve.currencies
            },
        },
        "ledger_audit": None
        if audit is None
        else {
            "ok": audit.ok,
            "finished_at": _iso(audit.finished_at),
            "age": audit.age,
            "violations": audit.violations,
            "accounts_checked": audit.accounts_checked,
        },
        "celery": {
            "queues": celery_queue_lengths(),
            "workers": None
            if workers is None
            else {
                w.hostname: {"alive": w.alive, "age": w.age, "last_seen": _iso(w.last_seen), "queues": w.queues}
                for w in workers
            },
        },
        "errors": errors,
    }
