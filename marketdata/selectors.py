"""Market-data reads. Each is bounded by what it returns (levels, candles, markets), never
by the trade history: tickers come from at most 1,440 one-minute candles, depth from the
level index, candles from the stored resolutions."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from django.utils import timezone

from kootabase.errors import ServiceError
from marketdata.models import Candle, DepthLevel, MarketState
from marketdata.services import bucket_start, money_str
from orders.models import Market, Trade
from orders.services import market_get
from wallets.models import MONEY, Currency

INTERVALS: dict[str, tuple[str, int]] = {
    # interval: (stored resolution it is built from, its length in seconds)
    "1m": ("1m", 60),
    "5m": ("1m", 300),
    "15m": ("1m", 900),
    "1h": ("1h", 3600),
    "4h": ("1h", 14400),
    "1d": ("1d", 86400),
}
DEPTH_LIMIT_DEFAULT, DEPTH_LIMIT_MAX = 100, 5000
TRADES_LIMIT_DEFAULT, TRADES_LIMIT_MAX = 100, 1000
CANDLES_LIMIT_DEFAULT, CANDLES_LIMIT_MAX = 500, 1000
RATE_PLACES = 18


def markets_listed() -> list[Market]:
    return list(Market.objects.select_related("base", "quote").order_by("symbol"))


# --- Depth ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Depth:
    seq: int
    bids: list[list[str]]
    asks: list[list[str]]


def _levels(market: Market, side: str, limit: int | None) -> list[list[str]]:
    qs = DepthLevel.objects.filter(market=market, side=side).order_by(
        "-ticks" if side == DepthLevel.Side.BID else "ticks"
    )
    if limit is not None:
        qs = qs[:limit]
    return [[money_str(p), money_str(q)] for p, q in qs.values_list("price", "quantity")]


def _seq(market: Market) -> int:
    return MarketState.objects.filter(market=market).values_list("seq", flat=True).first() or 0


def depth_of(*, market: Market, limit: int | None = DEPTH_LIMIT_DEFAULT) -> Depth:
    """The book's top ``limit`` levels per side (None: all) and the ``seq`` they reflect.

    The levels are read between two reads of ``seq``; if a batch committed in between,
    the read is repeated, so the result is always one consistent committed state."""
    for _ in range(20):
        before = _seq(market)
        bids, asks = _levels(market, DepthLevel.Side.BID, limit), _levels(market, DepthLevel.Side.ASK, limit)
        if _seq(market) == before:
            return Depth(seq=before, bids=bids, asks=asks)
    raise ServiceError("depth_busy", "The book changed during every read; try again.", status=503)


# --- Trades ---------------------------------------------------------------------------


def trades_recent(*, market: Market, limit: int = TRADES_LIMIT_DEFAULT) -> list[Trade]:
    return list(Trade.objects.filter(market=market).order_by("-trade_no")[:limit])


# --- Candles --------------------------------------------------------------------------


@dataclass(slots=True)
class CandleRow:
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    base_volume: Decimal
    quote_volume: Decimal
    trade_count: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "open_time": self.open_time.isoformat().replace("+00:00", "Z"),
            "close_time": self.close_time.isoformat().replace("+00:00", "Z"),
            **{k: money_str(getattr(self, k)) for k in ("open", "high", "low", "close")},
            "base_volume": money_str(self.base_volume),
            "quote_volume": money_str(self.quote_volume),
            "trade_count": self.trade_count,
        }


def interval_floor(moment: datetime, interval: str) -> datetime:
    seconds = INTERVALS[interval][1]
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def _aggregate(rows: list[Candle], interval: str) -> list[CandleRow]:
    seconds = INTERVALS[interval][1]
    out: list[CandleRow] = []
    for row in rows:
        start = interval_floor(row.open_time, interval)
        if out and out[-1].open_time == start:
            last = out[-1]
            last.high, last.low, last.close = max(last.high, row.high), min(last.low, row.low), row.close
            with localcontext(MONEY):
                last.base_volume += row.base_volume
                last.quote_volume += row.quote_volume
            last.trade_count += row.trade_count
        else:
            out.append(
                CandleRow(
                    start,
                    start + timedelta(seconds=seconds) - timedelta(milliseconds=1),
                    row.open,
                    row.high,
                    row.low,
                    row.close,
                    row.base_volume,
                    row.quote_volume,
                    row.trade_count,
                )
            )
    return out


def candles_of(
    *,
    market: Market,
    interval: str,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = CANDLES_LIMIT_DEFAULT,
) -> list[CandleRow]:
    """OHLCV of ``interval`` with ``start <= open_time <= end``, oldest first, at most
    ``limit`` (the latest ones when ``start`` is not given). Buckets without trades are
    left out."""
    if interval not in INTERVALS:
        raise ServiceError("interval_invalid", f"The interval is one of {', '.join(INTERVALS)}.")
    stored, seconds = INTERVALS[interval]
    per = seconds // {"1m": 60, "1h": 3600, "1d": 86400}[stored]
    qs = Candle.objects.filter(market=market, interval=stored)
    if end is not None:
        qs = qs.filter(open_time__lt=interval_floor(end, interval) + timedelta(seconds=seconds))
    if start is not None:
        rows = list(qs.filter(open_time__gte=interval_floor(start, interval)).order_by("open_time")[: limit * per])
        return _aggregate(rows, interval)[:limit]
    rows = list(qs.order_by("-open_time")[: limit * per])
    rows.reverse()
    return _aggregate(rows, interval)[-limit:]


def candle_current(*, market: Market, interval: str, moment: datetime) -> CandleRow | None:
    """The candle of ``interval`` that holds ``moment``, if it has trades."""
    stored, seconds = INTERVALS[interval]
    start = interval_floor(moment, interval)
    rows = list(
        Candle.objects.filter(
            market=market,
            interval=stored,
            open_time__gte=start,
            open_time__lt=start + timedelta(seconds=seconds),
        ).order_by("open_time")
    )
    found = _aggregate(rows, interval)
    return found[0] if found else None


# --- Tickers --------------------------------------------------------------------------


def _pct(change: Decimal, open_: Decimal) -> str:
    with localcontext() as ctx:
        ctx.prec = 28
        return money_str((change * 100 / open_).quantize(Decimal("0.01")))


def ticker_of(*, market: Market, now: datetime | None = None) -> dict[str, Any]:
    """The rolling 24 h ticker: the 1m candles whose minute started in the last 24 h
    (1,440 rows at most, read off the unique index), the last trade and the best bid and
    ask from ``MarketState``."""
    now = now or timezone.now()
    since = bucket_start(now, "1m") - timedelta(minutes=1439)
    rows = list(
        Candle.objects.filter(market=market, interval="1m", open_time__gte=since)
        .order_by("open_time")
        .values_list("open", "high", "low", "close", "base_volume", "quote_volume", "trade_count", "open_time")
    )
    state = MarketState.objects.filter(market=market).first()
    last = state.last_price if state else None
    data: dict[str, Any] = {
        "symbol": market.symbol,
        "open": None,
        "high": None,
        "low": None,
        "last": money_str(last) if last is not None else None,
        "base_volume": "0",
        "quote_volume": "0",
        "change": None,
        "change_percent": None,
        "trade_count": 0,
        "bid": None,
        "bid_quantity": None,
        "ask": None,
        "ask_quantity": None,
        "open_time": since.isoformat().replace("+00:00", "Z"),
        "close_time": now.isoformat().replace("+00:00", "Z"),
        "seq": state.seq if state else 0,
    }
    if state:
        for name in ("bid", "bid_quantity", "ask", "ask_quantity"):
            value = getattr(state, f"best_{name}")
            data[name] = money_str(value) if value is not None else None
    if rows:
        open_ = rows[0][0]
        high, low = max(r[1] for r in rows), min(r[2] for r in rows)
        with localcontext(MONEY):
            base = sum((r[4] for r in rows), Decimal(0))
            quote = sum((r[5] for r in rows), Decimal(0))
            change = rows[-1][3] - open_
        data.update(
            open=money_str(open_),
            high=money_str(high),
            low=money_str(low),
            base_volume=money_str(base),
            quote_volume=money_str(quote),
            change=money_str(change),
            change_percent=_pct(change, open_),
            trade_count=sum(r[6] for r in rows),
        )
    return data


def tickers_all(*, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or timezone.now()
    return [ticker_of(market=m, now=now) for m in markets_listed()]


# --- Rates ----------------------------------------------------------------------------


def _reference_price(state: MarketState | None) -> tuple[Decimal | None, str]:
    """The mid of the best bid and ask when both exist, else the last trade price."""
    if state is None:
        return None, ""
    if state.best_bid is not None and state.best_ask is not None:
        with localcontext(MONEY):
            return (state.best_bid + state.best_ask) / 2, "mid"
    if state.last_price is not None:
        return state.last_price, "last"
    return None, ""


def rates_to(*, quote: str) -> dict[str, Any]:
    """Every listed currency priced in ``quote``: directly through a market with it, or
    through the fewest intermediate currencies (BTC -> USDT -> EUR). The price of a
    market is the mid of its best bid and ask, or its last trade price."""
    code = str(quote).strip().upper()
    target = Currency.objects.filter(code=code).first()
    if target is None:
        raise ServiceError("unknown_currency", f"Unknown currency {quote!r}.", details={"quote": str(quote)})
    states = {s.market_id: s for s in MarketState.objects.all()}
    edges: dict[str, list[tuple[str, Decimal, str, str]]] = {}
    for market in Market.objects.select_related("base", "quote").exclude(status=Market.Status.HALTED):
        price, source = _reference_price(states.get(market.pk))
        if not price:
            continue
        base, quote_code = market.base.code, market.quote.code
        with localcontext() as ctx:
            ctx.prec = 40
            edges.setdefault(base, []).append((quote_code, price, market.symbol, source))  # 1 base = price quote
            edges.setdefault(quote_code, []).append((base, 1 / price, market.symbol, source))
    # Breadth-first from the target: rate[c] = value of 1 c in the target currency.
    found: dict[str, tuple[Decimal, list[str], list[str]]] = {code: (Decimal(1), [], [])}
    queue = deque([code])
    while queue:
        current = queue.popleft()
        value, route, sources = found[current]
        for other, price, symbol, source in sorted(edges.get(current, []), key=lambda e: e[2]):
            if other in found:
                continue
            # 1 current = price other  ->  1 other = value / price in the target.
            with localcontext() as ctx:
                ctx.prec = 40
                found[other] = (value / price, [symbol, *route], [source, *sources])
            queue.append(other)
    rates = []
    for currency in Currency.objects.filter(is_active=True).order_by("code"):
        if currency.code in found:
            value, route, sources = found[currency.code]
            rounded = value.quantize(Decimal(1).scaleb(-RATE_PLACES))
            rates.append(
                {
                    "currency": currency.code,
                    "rate": money_str(rounded),
                    "route": route,
                    "sources": sources,
                    "reason": None,
                }
            )
        else:
            rates.append({"currency": currency.code, "rate": None, "route": [], "sources": [], "reason": "no_route"})
    return {"quote": code, "time": timezone.now().isoformat().replace("+00:00", "Z"), "rates": rates}


def market_by_symbol(symbol: str) -> Market:
    """The market ``symbol`` (any status); 404 ``unknown_market`` otherwise."""
    try:
        return market_get(symbol=symbol)
    except ServiceError as exc:
        raise ServiceError(exc.code, exc.message, details=exc.details, status=404) from exc
