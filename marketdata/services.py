"""Market-data writes: the matcher's per-batch update and the rebuild from the trades table.

``MarketDataWriter.apply_batch`` runs inside the matcher's batch transaction (the matcher
is the single writer of its market), so the aggregates are exactly as committed as the
trades:

- the depth levels the batch changed are upserted (quantity 0 deletes the level), and
  the best bid and ask are the engine's (the book the levels came from);
- the batch's trades are folded into their 1m, 1h and 1d candles (one upsert);
- ``MarketState.seq`` goes up by one and the last trade is recorded.

Its cost is bounded by the batch (levels changed, buckets touched), never by history.
The writer remembers what its last committed batch stored (``seq``, the last trade, the
latest candle of each interval), so a batch writes without reading anything back: its
``MarketState`` update is conditional on the ``seq`` it remembers, and only where that
fails (its first batch, a rebuild since, a batch rolled back) does it lock and read the
state and the candles it touches. ``marketdata_rebuild`` recomputes everything of a
market from ``orders.Trade`` and the resting orders, under the same row lock, and bumps
``seq`` so live feeds resync and the writer reads afresh.
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

from kootabase.db import model_build, row_update_where, rows_upsert
from kootabase.events import broadcast_after_commit
from marketdata.models import Candle, DepthLevel, MarketState
from matching.engine import Top
from orders.models import Market, Order, OrderStatus, Trade
from orders.pricing import market_spec
from orders.services import market_group, order_event
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


def _levels_delete(market_id: int, gone: Mapping[str, Sequence[int]]) -> None:
    """Delete the market's depth levels at these prices in ticks, by side: plain SQL, as
    every matcher batch with a level gone runs it (the ORM's delete built the query and
    collected related rows each time; a depth level has none)."""
    meta = DepthLevel._meta
    quote = connection.ops.quote_name
    side, ticks = quote(meta.get_field("side").column), quote(meta.get_field("ticks").column)
    clauses: list[str] = []
    params: list[Any] = [market_id]
    for name, prices in gone.items():
        if prices:
            clauses.append(f"({side} = %s AND {ticks} IN ({', '.join(['%s'] * len(prices))}))")
            params += [name, *prices]
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {quote(meta.db_table)} WHERE {quote(meta.get_field('market').column)} = %s "  # noqa: S608 - names from the model
            f"AND ({' OR '.join(clauses)})",
            params,
        )


def _apply_levels(market: Market, levels: Mapping[tuple[str, int], int]) -> tuple[list[list[str]], list[list[str]]]:
    spec = market_spec(market)
    upserts: list[DepthLevel] = []
    gone: dict[str, list[int]] = {DepthLevel.Side.BID: [], DepthLevel.Side.ASK: []}
    out: dict[str, list[list[str]]] = {DepthLevel.Side.BID: [], DepthLevel.Side.ASK: []}
    for (side, ticks), lots in levels.items():
        price, quantity = spec.ticks_to_price(ticks), spec.lots_to_qty(lots)
        out[side].append([money_str(price), money_str(quantity)])
        if lots:
            level = {"market_id": market.pk, "side": side, "ticks": ticks, "price": price, "quantity": quantity}
            upserts.append(model_build(DepthLevel, level))
        else:
            gone[side].append(ticks)
    if gone[DepthLevel.Side.BID] or gone[DepthLevel.Side.ASK]:
        _levels_delete(market.pk, gone)
    rows_upsert(DepthLevel, upserts, unique_fields=["market", "side", "ticks"], update_fields=["price", "quantity"])
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
    with localcontext(MONEY):
        for trade in trades:
            price, quantity, quote, trade_no = trade.price, trade.quantity, trade.quote_amount, trade.trade_no
            for interval in STORED_INTERVALS:
                key = (interval, bucket_start(trade.created_at, interval))
                bucket = buckets.get(key)
                if bucket is None:
                    buckets[key] = _Bucket(price, price, price, price, quantity, quote, 1, trade_no, trade_no)
                else:  # _Bucket.add of this one trade
                    if price > bucket.high:
                        bucket.high = price
                    if price < bucket.low:
                        bucket.low = price
                    bucket.close = price
                    bucket.base_volume += quantity
                    bucket.quote_volume += quote
                    bucket.trade_count += 1
                    bucket.last_trade_no = trade_no
    return buckets


Buckets = dict[tuple[str, datetime], _Bucket]


def _fields_of(bucket: _Bucket | Candle) -> dict[str, Any]:
    """A bucket's values by name, from a ``_Bucket`` or a stored ``Candle``."""
    return {name: getattr(bucket, name) for name in _Bucket.__slots__}


def _candles_upsert(market: Market, buckets: Buckets, known: Buckets) -> Buckets:
    """Fold ``buckets`` into the stored candles; returns the rows as written. ``known``:
    rows as stored that need no reading (the writer's latest ones); the rest are read."""
    if not buckets:
        return {}
    merged: Buckets = {key: _Bucket(**_fields_of(known[key])) for key in buckets.keys() & known.keys()}
    unknown = buckets.keys() - merged.keys()
    if unknown:
        existing = Candle.objects.filter(
            market=market,
            interval__in={interval for interval, _ in unknown},
            open_time__in={start for _, start in unknown},
        )
        for candle in existing:
            key = (candle.interval, candle.open_time)
            if key in unknown:
                merged[key] = _Bucket(**_fields_of(candle))
    for key, bucket in buckets.items():
        if key in merged:
            if bucket.first_trade_no <= merged[key].last_trade_no:
                continue  # already folded in (a rebuild ran after these trades committed)
            merged[key].add(bucket)
        else:
            merged[key] = bucket
    rows_upsert(
        Candle,
        [
            model_build(Candle, {"market": market, "interval": interval, "open_time": start, **_fields_of(b)})
            for (interval, start), b in merged.items()
        ],
        unique_fields=["market", "interval", "open_time"],
        update_fields=list(_Bucket.__slots__),
    )
    return merged


@dataclass(frozen=True, slots=True)
class _Stored:
    """What the writer's last committed batch left stored: right while ``seq`` is still
    the stored one (a rebuild bumps it)."""

    seq: int
    last_trade_no: int
    candles: Buckets  # the latest candle of each interval


class MarketDataWriter:
    """The matcher's writer of its market's aggregates: one per matcher, in its process.

    Only its own committed batches and ``marketdata_rebuild`` write a market's aggregates,
    and each moves ``MarketState.seq``. So what its last batch stored stays true exactly
    as long as ``seq`` is the one that batch wrote: the next batch's state update names
    that ``seq`` and, where it matches, holds the row lock and writes without reading.
    What it learns from a batch becomes known only once the batch commits."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._stored: _Stored | None = None

    def apply_batch(self, *, trades: Sequence[Trade], levels: Mapping[tuple[str, int], int], top: Top) -> AppliedBatch:
        """Fold one committed-together matcher batch into the aggregates; returns the new seq.

        ``trades`` are the batch's saved ``Trade`` rows in ``trade_no`` order; ``levels`` maps
        ``(side, price in ticks)`` to the level's new total quantity in lots (0: the level is
        gone), the engine's integers; ``top`` is the engine's best bid and ask after the
        batch. Call it inside the batch's transaction.
        """
        market = self.market
        stored, self._stored = self._stored, None  # known again once this batch commits
        with transaction.atomic(savepoint=False):
            if stored is None or not self._state_write(stored, trades, top):
                state = _state_locked(market)
                stored = _Stored(state.seq, state.last_trade_no, {})
                if not self._state_write(stored, trades, top):
                    raise AssertionError(f"{market.symbol}: the locked market state moved")
            bids, asks = _apply_levels(market, levels)
            fresh = [t for t in trades if t.trade_no > stored.last_trade_no]
            written = _candles_upsert(market, _fold_trades(fresh), stored.candles)
        latest: dict[str, tuple[datetime, _Bucket]] = {}
        for (interval, start), bucket in (*stored.candles.items(), *written.items()):
            if interval not in latest or start >= latest[interval][0]:
                latest[interval] = (start, bucket)
        after = _Stored(
            stored.seq + 1,
            fresh[-1].trade_no if fresh else stored.last_trade_no,
            {(interval, start): bucket for interval, (start, bucket) in latest.items()},
        )
        transaction.on_commit(lambda: setattr(self, "_stored", after))
        return AppliedBatch(seq=after.seq, bids=bids, asks=asks)

    def _state_write(self, stored: _Stored, trades: Sequence[Trade], top: Top) -> bool:
        """The state after the batch, if it is still at ``stored.seq``; whether it was."""
        spec = market_spec(self.market)
        fields: dict[str, Any] = {"seq": stored.seq + 1, "updated_at": timezone.now()}
        for side, price, quantity in (("bid", top.bid_price, top.bid_qty), ("ask", top.ask_price, top.ask_qty)):
            fields[f"best_{side}"] = spec.ticks_to_price(price) if price is not None else None
            fields[f"best_{side}_quantity"] = spec.lots_to_qty(quantity) if quantity is not None else None
        if trades and trades[-1].trade_no > stored.last_trade_no:
            last = trades[-1]
            fields |= {"last_price": last.price, "last_trade_no": last.trade_no, "last_trade_at": last.created_at}
        where = {"market_id": self.market.pk, "seq": stored.seq}
        return row_update_where(MarketState, where=where, values=fields) == 1


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
            [Candle(market=market, interval=i, open_time=s, **_fields_of(b)) for (i, s), b in buckets.items()],
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


def user_events(
    *, market: Market, orders: Iterable[Order], trades: Sequence[Trade]
) -> list[tuple[int, dict[str, Any]]]:
    """Private messages of one batch, one ``user.events`` message per user: the new state
    of each of their changed orders (``orders``, as in ``order.update``) and each of their
    fills (``trades``, as in ``user.trade``: maker and taker each from their side, with
    their fee), in the batch's order. The WebSocket consumer forwards every item as a
    frame of its own, as if it had come in a message of its own. The new balances go out
    from the ledger itself (``wallets.events``), also one message per user per batch."""
    by_user: dict[int, dict[str, Any]] = {}

    def of(user_id: int) -> dict[str, Any]:
        message = by_user.get(user_id)
        if message is None:
            message = by_user[user_id] = {"type": "user.events", "orders": [], "trades": []}
        return message

    for order in orders:
        of(order.user_id)["orders"].append(order_event(order)["order"])
    symbol, fee_currency = market.symbol, market.quote.code
    for trade in trades:
        price, quantity = money_str(trade.price), money_str(trade.quantity)
        quote_quantity, time = money_str(trade.quote_amount), _iso(trade.created_at)
        maker_side = "sell" if trade.taker_side == "buy" else "buy"
        for user_id, order_id, side, role, fee in (
            (trade.maker_user_id, trade.maker_order_id, maker_side, "maker", trade.maker_fee),
            (trade.taker_user_id, trade.taker_order_id, trade.taker_side, "taker", trade.taker_fee),
        ):
            of(user_id)["trades"].append(
                {
                    "market": symbol,
                    "id": trade.trade_no,
                    "order_id": order_id,
                    "side": side,
                    "role": role,
                    "price": price,
                    "quantity": quantity,
                    "quote_quantity": quote_quantity,
                    "fee": money_str(fee),
                    "fee_currency": fee_currency,
                    "time": time,
                }
            )
    return list(by_user.items())
