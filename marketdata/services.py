"""Market-data writes: the matcher's per-batch update and the rebuild from the trades table.

``marketdata_apply_batch`` runs inside the matcher's batch transaction (the matcher is the
single writer of its market), so the aggregates are exactly as committed as the trades:

- the depth levels the batch changed are upserted (quantity 0 deletes the level), and
  the best bid and ask are re-read from the index;
- the batch's trades are folded into their 1m, 1h and 1d candles (one read, one upsert);
- ``MarketState.seq`` goes up by one and the last trade is recorded.

Its cost is bounded by the batch (levels changed, buckets touched), never by history.
``marketdata_rebuild`` recomputes everything of a market from ``orders.Trade`` and the
resting orders, under the same row lock, and bumps ``seq`` so live feeds resync.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from kootabase.events import broadcast_after_commit
from marketdata.models import Candle, DepthLevel, MarketState
from orders.models import Market, Order, OrderStatus, Trade
from orders.pricing import market_spec
from orders.services import market_group
from wallets.models import MONEY

STORED_INTERVALS: dict[str, str] = {"1m": "minute", "1h": "hour", "1d": "day"}


def money_str(value: Decimal) -> str:
    """Plain fixed-point text without trailing zeros: ``"2000"``, ``"0.5"``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def bucket_start(moment: datetime, interval: str) -> datetime:
    """The start of the stored bucket (``1m``, ``1h``, ``1d``) that holds ``moment`` (UTC)."""
    if interval == "1m":
        return moment.replace(second=0, microsecond=0)
    if interval == "1h":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """What a batch changed, for the broadcast: the new ``seq`` and the changed levels."""

    seq: int
    bids: list[list[str]]
    asks: list[list[str]]


def _upsert_target(fields: list[str]) -> dict[str, Any]:
    """``unique_fields`` for ``bulk_create(update_conflicts=True)`` where the backend takes
    them (SQLite, PostgreSQL); MySQL/MariaDB's ON DUPLICATE KEY UPDATE uses every unique key."""
    return {"unique_fields": fields} if connection.features.supports_update_conflicts_with_target else {}


def _state_locked(market: Market) -> MarketState:
    state = MarketState.objects.select_for_update().filter(market=market).first()
    if state is None:
        MarketState.objects.get_or_create(market=market)
        state = MarketState.objects.select_for_update().get(market=market)
    return state


def _best(market: Market, side: str) -> DepthLevel | None:
    order = "-ticks" if side == DepthLevel.Side.BID else "ticks"
    return DepthLevel.objects.filter(market=market, side=side).order_by(order).first()


def _refresh_best(state: MarketState, sides: Iterable[str]) -> None:
    for side in sides:
        level = _best(state.market, side)
        price, quantity = (level.price, level.quantity) if level else (None, None)
        if side == DepthLevel.Side.BID:
            state.best_bid, state.best_bid_quantity = price, quantity
        else:
            state.best_ask, state.best_ask_quantity = price, quantity


def _apply_levels(market: Market, levels: Mapping[tuple[str, str], str]) -> tuple[list[list[str]], list[list[str]]]:
    spec = market_spec(market)
    upserts: list[DepthLevel] = []
    gone: dict[str, list[int]] = {DepthLevel.Side.BID: [], DepthLevel.Side.ASK: []}
    out: dict[str, list[list[str]]] = {DepthLevel.Side.BID: [], DepthLevel.Side.ASK: []}
    for (side, price_text), quantity_text in levels.items():
        price, quantity = Decimal(price_text), Decimal(quantity_text)
        ticks = spec.price_to_ticks(price)
        out[side].append([money_str(price), money_str(quantity)])
        if quantity:
            upserts.append(DepthLevel(market=market, side=side, ticks=ticks, price=price, quantity=quantity))
        else:
            gone[side].append(ticks)
    for side, ticks in gone.items():
        if ticks:
            DepthLevel.objects.filter(market=market, side=side, ticks__in=ticks).delete()
    if upserts:
        DepthLevel.objects.bulk_create(
            upserts,
            update_conflicts=True,
            **_upsert_target(["market", "side", "ticks"]),
            update_fields=["price", "quantity"],
        )
    return out[DepthLevel.Side.BID], out[DepthLevel.Side.ASK]


@dataclass(slots=True)
class _Bucket:
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    base_volume: Decimal
    quote_volume: Decimal
    trade_count: int
    first_trade_no: int
    last_trade_no: int

    def add(self, other: _Bucket) -> None:
        """Fold ``other`` (later trades) into this bucket."""
        self.high = max(self.high, other.high)
        self.low = min(self.low, other.low)
        self.close = other.close
        with localcontext(MONEY):
            self.base_volume += other.base_volume
            self.quote_volume += other.quote_volume
        self.trade_count += other.trade_count
        self.last_trade_no = other.last_trade_no


def _fold_trades(trades: Iterable[Trade]) -> dict[tuple[str, datetime], _Bucket]:
    """Trades (in trade_no order) -> their buckets at every stored interval."""
    buckets: dict[tuple[str, datetime], _Bucket] = {}
    for trade in trades:
        one = _Bucket(
            trade.price,
            trade.price,
            trade.price,
            trade.price,
            trade.quantity,
            trade.quote_amount,
            1,
            trade.trade_no,
            trade.trade_no,
        )
        for interval in STORED_INTERVALS:
            key = (interval, bucket_start(trade.created_at, interval))
            if key in buckets:
                buckets[key].add(one)
            else:
                buckets[key] = _Bucket(**{name: getattr(one, name) for name in _Bucket.__slots__})
    return buckets


def _candles_upsert(market: Market, buckets: dict[tuple[str, datetime], _Bucket]) -> None:
    if not buckets:
        return
    existing = Candle.objects.filter(
        market=market,
        interval__in={interval for interval, _ in buckets},
        open_time__in={start for _, start in buckets},
    )
    merged: dict[tuple[str, datetime], _Bucket] = {}
    for candle in existing:
        key = (candle.interval, candle.open_time)
        if key in buckets:
            merged[key] = _Bucket(**{name: getattr(candle, name) for name in _Bucket.__slots__})
    for key, bucket in buckets.items():
        if key in merged:
            if bucket.first_trade_no <= merged[key].last_trade_no:
                continue  # already folded in (a rebuild ran after these trades committed)
            merged[key].add(bucket)
        else:
            merged[key] = bucket
    Candle.objects.bulk_create(
        [
            Candle(market=market, interval=interval, open_time=start, **{n: getattr(b, n) for n in _Bucket.__slots__})
            for (interval, start), b in merged.items()
        ],
        update_conflicts=True,
        **_upsert_target(["market", "interval", "open_time"]),
        update_fields=list(_Bucket.__slots__),
    )


def marketdata_apply_batch(
    *, market: Market, trades: Sequence[Trade], levels: Mapping[tuple[str, str], str]
) -> AppliedBatch:
    """Fold one committed-together matcher batch into the aggregates; returns the new seq.

    ``trades`` are the batch's saved ``Trade`` rows in ``trade_no`` order; ``levels`` maps
    ``(side, price)`` to the level's new total quantity (``"0"``: the level is gone), as
    strings. Call it inside the batch's transaction.
    """
    with transaction.atomic(savepoint=False):
        state = _state_locked(market)
        state.market = market
        bids, asks = _apply_levels(market, levels)
        sides = {side for side, _ in levels}
        if sides:
            _refresh_best(state, sides)
        fresh = [t for t in trades if t.trade_no > state.last_trade_no]
        _candles_upsert(market, _fold_trades(fresh))
        if fresh:
            last = fresh[-1]
            state.last_price, state.last_trade_no, state.last_trade_at = last.price, last.trade_no, last.created_at
        state.seq += 1
        state.save()
    return AppliedBatch(seq=state.seq, bids=bids, asks=asks)


def marketdata_rebuild(*, market: Market, chunk: int = 5000) -> MarketState:
    """Recompute candles, depth and the ticker inputs of ``market`` from the trades table
    and the resting orders. ``seq`` goes up by one and ``market.resync`` tells the live
    feeds to take a new snapshot."""
    with transaction.atomic():
        state = _state_locked(market)
        state.market = market
        Candle.objects.filter(market=market).delete()
        DepthLevel.objects.filter(market=market).delete()
        buckets: dict[tuple[str, datetime], _Bucket] = {}
        after = 0
        last: Trade | None = None
        while True:
            rows = list(Trade.objects.filter(market=market, trade_no__gt=after).order_by("trade_no")[:chunk])
            if not rows:
                break
            for key, bucket in _fold_trades(rows).items():
                if key in buckets:
                    buckets[key].add(bucket)
                else:
                    buckets[key] = bucket
            after, last = rows[-1].trade_no, rows[-1]
        Candle.objects.bulk_create(
            [
                Candle(market=market, interval=i, open_time=s, **{n: getattr(b, n) for n in _Bucket.__slots__})
                for (i, s), b in buckets.items()
            ],
            batch_size=1000,
        )
        spec = market_spec(market)
        totals: dict[tuple[str, int], Decimal] = {}
        resting = Order.objects.filter(
            market=market, status__in=(OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
        ).values_list("side", "price", "quantity", "filled_quantity")
        with localcontext(MONEY):
            for side, price, quantity, filled in resting.iterator(chunk_size=chunk):
                key = (side, spec.price_to_ticks(price))
                totals[key] = totals.get(key, Decimal(0)) + quantity - filled
        DepthLevel.objects.bulk_create(
            [
                DepthLevel(market=market, side=side, ticks=ticks, price=spec.ticks_to_price(ticks), quantity=qty)
                for (side, ticks), qty in totals.items()
                if qty > 0
            ],
            batch_size=1000,
        )
        _refresh_best(state, (DepthLevel.Side.BID, DepthLevel.Side.ASK))
        if last is not None:
            state.last_price, state.last_trade_no, state.last_trade_at = last.price, last.trade_no, last.created_at
        else:
            state.last_price, state.last_trade_no, state.last_trade_at = None, 0, None
        state.seq = F("seq") + 1
        state.save()
        state.refresh_from_db()
        broadcast_after_commit(
            market_group(market.symbol), {"type": "market.resync", "market": market.symbol, "seq": state.seq}
        )
    return state


# --- What the matcher broadcasts after the commit ----------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def trade_public(trade: Trade) -> dict[str, Any]:
    """A public trade, as in ``GET /markets/{symbol}/trades`` and the ``trades.*`` channel."""
    return {
        "id": trade.trade_no,
        "price": money_str(trade.price),
        "quantity": money_str(trade.quantity),
        "quote_quantity": money_str(trade.quote_amount),
        "side": trade.taker_side,
        "time": _iso(trade.created_at),
    }


def market_event(*, market: Market, trades: Sequence[Trade], applied: AppliedBatch) -> dict[str, Any]:
    """The ``market.<symbol>`` group message of one batch: its depth ``seq``, the changed
    levels (absolute quantities, ``"0"`` = gone) and the trades."""
    return {
        "type": "market.update",
        "market": market.symbol,
        "seq": applied.seq,
        "time": _iso(timezone.now()),
        "bids": applied.bids,
        "asks": applied.asks,
        "trades": [trade_public(t) for t in trades],
    }


def user_events(*, market: Market, trades: Sequence[Trade]) -> list[tuple[int, dict[str, Any]]]:
    """Private messages of one batch: each fill to both of its users (``user.trade``),
    each from their side. The new balances go out from the ledger itself
    (``wallets.events``), one message per user for the whole batch."""
    messages: list[tuple[int, dict[str, Any]]] = []
    for trade in trades:
        for user_id, role in ((trade.maker_user_id, "maker"), (trade.taker_user_id, "taker")):
            is_taker = role == "taker"
            side = trade.taker_side if is_taker else ("sell" if trade.taker_side == "buy" else "buy")
            messages.append(
                (
                    user_id,
                    {
                        "type": "user.trade",
                        "trade": {
                            "market": market.symbol,
                            "id": trade.trade_no,
                            "order_id": trade.taker_order_id if is_taker else trade.maker_order_id,
                            "side": side,
                            "role": role,
                            "price": money_str(trade.price),
                            "quantity": money_str(trade.quantity),
                            "quote_quantity": money_str(trade.quote_amount),
                            "fee": money_str(trade.taker_fee if is_taker else trade.maker_fee),
                            "fee_currency": market.quote.code,
                            "time": _iso(trade.created_at),
                        },
                    },
                )
            )
    return messages
