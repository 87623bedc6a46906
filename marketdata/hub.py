"""The per-process fan-out of public market data to the WebSocket connections.

One ``Hub`` per event loop (an ASGI process) owns one channel of the market-data layer
(``kootabase.events.MARKET_DATA_LAYER``; Redis Pub/Sub in production) and joins each
``market.<symbol>`` group once, when the first connection subscribes to that market, so
the layer carries one copy of each matcher message per process, never one per socket.
That is what fans a matcher's batches out to every web process.

Per market the hub keeps a ``Feed``: the full book (from a DB snapshot, then the
matcher's level changes), its ``seq``, and the subscribers of each channel, held in
memory. Outgoing frames are serialised once and pushed to every subscriber's outbox.

- **depth**: a new subscriber gets the hub's book as a snapshot at once; then merged
  diffs ``{first_seq, last_seq, bids, asks}`` at most once per ``DEPTH_INTERVAL``
  (sent at once when the market was quiet, else at the end of the interval), so a busy
  market costs a bounded number of frames per second. A matcher message with a ``seq``
  that skips one (a lost message) or a ``market.resync`` (a rebuild) reloads the book
  from the database and sends every subscriber a fresh snapshot.
- **trades**: forwarded as they arrive.
- **ticker / candles / tickers**: recomputed from the stored aggregates at most once per
  ``SLOW_INTERVAL`` per market after a change; a read that fails is tried again an
  interval later, so a change is never left unannounced until the next trade.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from kootabase.events import MARKET_DATA_LAYER
from marketdata import selectors
from orders.models import Market
from orders.services import market_group

logger = logging.getLogger(__name__)

DEPTH_INTERVAL = 0.05  # seconds: at most 20 depth diffs per second per market
SLOW_INTERVAL = 0.5  # seconds: ticker and candle updates
REJOIN_EVERY = 3600.0  # group memberships expire (channels-redis: after a day); renew them


class Subscriber(Protocol):
    def push(self, text: str) -> None: ...


def frame(op: str, channel: str, data: Any) -> str:
    return json.dumps({"op": op, "channel": channel, "data": data}, separators=(",", ":"))


def _sorted_levels(levels: dict[str, str], *, descending: bool) -> list[list[str]]:
    return [[p, q] for p, q in sorted(levels.items(), key=lambda pq: Decimal(pq[0]), reverse=descending)]


@dataclass
class Feed:
    symbol: str
    market_id: int
    seq: int = 0
    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)
    loading: asyncio.Future | None = None
    buffered: list[dict[str, Any]] = field(default_factory=list)
    # the merged diff not yet sent
    pending_bids: dict[str, str] = field(default_factory=dict)
    pending_asks: dict[str, str] = field(default_factory=dict)
    first_seq: int | None = None
    last_time: str | None = None
    last_flush: float = 0.0
    flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
    # subscribers
    depth: set[Subscriber] = field(default_factory=set)
    trades: set[Subscriber] = field(default_factory=set)
    ticker: set[Subscriber] = field(default_factory=set)
    candles: dict[str, set[Subscriber]] = field(default_factory=dict)
    # slow updates
    slow_dirty: bool = False
    slow_last: float = 0.0
    slow_task: asyncio.Task | None = None
    ticker_data: dict[str, Any] | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "bids": _sorted_levels(self.bids, descending=True),
            "asks": _sorted_levels(self.asks, descending=False),
        }


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer(MARKET_DATA_LAYER)
        self.channel: str | None = None
        self.feeds: dict[str, Feed] = {}
        self.tickers: set[Subscriber] = set()
        self._started: asyncio.Future | None = None
        self._tasks: list[asyncio.Task] = []
        self.depth_interval = DEPTH_INTERVAL
        self.slow_interval = SLOW_INTERVAL

    # -- lifecycle

    async def _start(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            # The market-data layer (Redis Pub/Sub in production) pushes each batch to this
            # channel: no round trip per message, so a busy fan-out does not slow the intake.
            self.channel = await self.layer.new_channel()
            self._tasks.append(asyncio.create_task(self._read()))
            self._tasks.append(asyncio.create_task(self._rejoin()))
            self._started.set_result(None)
        await self._started

    async def _read(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken layer or one bad message must not stop the feed
                logger.exception("marketdata hub: receive failed")
                await asyncio.sleep(1.0)
                continue
            try:
                self.dispatch(message)
            except Exception:  # a broken layer or one bad message must not stop the feed
                logger.exception("marketdata hub: cannot handle %r", message.get("type"))

    async def _rejoin(self) -> None:
        while True:
            await asyncio.sleep(REJOIN_EVERY)
            for symbol in list(self.feeds):
                await self.layer.group_add(market_group(symbol), self.channel)

    async def feed(self, symbol: str) -> Feed:
        """The feed of ``symbol``, joined and loaded (the first call joins and loads)."""
        await self._start()
        feed = self.feeds.get(symbol)
        if feed is None:
            feed = self.feeds[symbol] = Feed(symbol=symbol, market_id=0)
            feed.loading = asyncio.get_running_loop().create_future()
            try:
                market_id = await database_sync_to_async(
                    lambda: Market.objects.filter(symbol=symbol).values_list("pk", flat=True).first()
                )()
                if market_id is None:
                    raise LookupError(symbol)
                feed.market_id = market_id
                await self.layer.group_add(market_group(symbol), self.channel)
                await self._load(feed, started=True)
            except BaseException:
                del self.feeds[symbol]
                if not feed.loading.done():
                    feed.loading.set_result(None)
                raise
        if feed.loading is not None and not feed.loading.done():
            await asyncio.shield(feed.loading)
        return feed

    async def _load(self, feed: Feed, *, started: bool = False) -> None:
        """(Re)load the book from the database; messages arriving meanwhile are buffered
        and applied on top (those the snapshot already includes are skipped)."""
        if not started:
            if feed.loading is not None and not feed.loading.done():
                return
            feed.loading = asyncio.get_running_loop().create_future()
        assert feed.loading is not None
        try:
            market = await database_sync_to_async(Market.objects.get)(pk=feed.market_id)
            depth = await database_sync_to_async(selectors.depth_of)(market=market, limit=None)
        except BaseException:
            feed.loading.set_result(None)
            raise
        feed.seq = depth.seq
        feed.bids = dict(depth.bids)
        feed.asks = dict(depth.asks)
        feed.pending_bids, feed.pending_asks, feed.first_seq = {}, {}, None
        buffered, feed.buffered = feed.buffered, []
        feed.loading.set_result(None)
        for subscriber in feed.depth:
            subscriber.push(frame("snapshot", f"depth.{feed.symbol}", feed.snapshot()))
        for message in buffered:
            self._market_update(feed, message)

    # -- incoming

    def dispatch(self, message: dict[str, Any]) -> None:
        feed = self.feeds.get(message.get("market", ""))
        if feed is None:
            return
        if message["type"] == "market.update":
            if feed.loading is not None and not feed.loading.done():
                feed.buffered.append(message)
            else:
                self._market_update(feed, message)
        elif message["type"] == "market.resync":
            self._reload(feed)

    def _reload(self, feed: Feed) -> None:
        if feed.loading is not None and not feed.loading.done():
            return
        feed.loading = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._load(feed, started=True))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    def _market_update(self, feed: Feed, message: dict[str, Any]) -> None:
        seq = message["seq"]
        if seq <= feed.seq:
            return  # already in the book (a snapshot taken after it)
        if seq != feed.seq + 1:
            logger.warning("marketdata hub: %s seq %d after %d; reloading", feed.symbol, seq, feed.seq)
            feed.buffered.append(message)
            self._reload(feed)
            return
        feed.seq = seq
        for levels, book, pending in (
            (message["bids"], feed.bids, feed.pending_bids),
            (message["asks"], feed.asks, feed.pending_asks),
        ):
            for price, quantity in levels:
                if quantity == "0":
                    book.pop(price, None)
                else:
                    book[price] = quantity
                pending[price] = quantity
        if feed.first_seq is None:
            feed.first_seq = seq
        feed.last_time = message.get("time")
        if feed.depth:
            self._schedule_flush(feed)
        else:
            feed.pending_bids.clear()
            feed.pending_asks.clear()
            feed.first_seq = None
        if message["trades"] and feed.trades:
            text = frame("update", f"trades.{feed.symbol}", message["trades"])
            for subscriber in feed.trades:
                subscriber.push(text)
        if feed.ticker or feed.candles or self.tickers:
            feed.slow_dirty = True
            self._schedule_slow(feed)

    # -- depth diffs

    def _schedule_flush(self, feed: Feed) -> None:
        if feed.flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = feed.last_flush + self.depth_interval - time.monotonic()
        feed.flush_handle = loop.call_later(wait, self._flush, feed) if wait > 0 else loop.call_soon(self._flush, feed)

    def _flush(self, feed: Feed) -> None:
        feed.flush_handle = None
        feed.last_flush = time.monotonic()
        if feed.first_seq is None:
            return
        data = {
            "first_seq": feed.first_seq,
            "last_seq": feed.seq,
            "bids": _sorted_levels(feed.pending_bids, descending=True),
            "asks": _sorted_levels(feed.pending_asks, descending=False),
            "time": feed.last_time,
        }
        feed.pending_bids, feed.pending_asks, feed.first_seq = {}, {}, None
        text = frame("update", f"depth.{feed.symbol}", data)
        for subscriber in feed.depth:
            subscriber.push(text)

    # -- ticker and candles

    def _schedule_slow(self, feed: Feed) -> None:
        if feed.slow_task is not None and not feed.slow_task.done():
            return
        feed.slow_task = asyncio.create_task(self._slow(feed))

    async def _slow(self, feed: Feed) -> None:
        while feed.slow_dirty:
            wait = feed.slow_last + self.slow_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            feed.slow_dirty = False
            feed.slow_last = time.monotonic()
            try:
                ticker, candles = await database_sync_to_async(self._read_slow)(feed, set(feed.candles))
            except Exception:  # a failed read (the database busy or away) is tried again next interval
                logger.exception("marketdata hub: cannot read the ticker of %s; trying again", feed.symbol)
                feed.slow_dirty = True
                continue
            feed.ticker_data = ticker
            if feed.ticker:
                text = frame("update", f"ticker.{feed.symbol}", ticker)
                for subscriber in feed.ticker:
                    subscriber.push(text)
            if self.tickers:
                text = frame("update", "tickers", [ticker])
                for subscriber in self.tickers:
                    subscriber.push(text)
            for interval, candle in candles.items():
                if candle is not None:
                    text = frame("update", f"candles.{interval}.{feed.symbol}", candle)
                    for subscriber in feed.candles.get(interval, ()):
                        subscriber.push(text)

    @staticmethod
    def _read_slow(feed: Feed, intervals: set[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any] | None]]:
        market = Market.objects.get(pk=feed.market_id)
        now = timezone.now()
        candles = {}
        for interval in intervals:
            row = selectors.candle_current(market=market, interval=interval, moment=now)
            candles[interval] = row.as_dict() if row else None
        return selectors.ticker_of(market=market, now=now), candles

    # -- subscriptions

    async def subscribe(self, subscriber: Subscriber, kind: str, symbol: str | None, interval: str | None) -> None:
        """Register ``subscriber``; it gets the channel's snapshot first (depth, ticker,
        candle, tickers), then its updates."""
        if kind == "tickers":
            markets = await database_sync_to_async(lambda: list(Market.objects.values_list("symbol", flat=True)))()
            feeds = [await self.feed(s) for s in markets]
            tickers = await database_sync_to_async(selectors.tickers_all)()
            self.tickers.add(subscriber)
            subscriber.push(frame("snapshot", "tickers", tickers))
            del feeds
            return
        assert symbol is not None
        feed = await self.feed(symbol)
        if kind == "depth":
            feed.depth.add(subscriber)
            subscriber.push(frame("snapshot", f"depth.{symbol}", feed.snapshot()))
        elif kind == "trades":
            feed.trades.add(subscriber)
        elif kind == "ticker":
            market = await database_sync_to_async(Market.objects.get)(pk=feed.market_id)
            ticker = await database_sync_to_async(selectors.ticker_of)(market=market)
            feed.ticker.add(subscriber)
            subscriber.push(frame("snapshot", f"ticker.{symbol}", ticker))
        elif kind == "candles":
            assert interval is not None
            market = await database_sync_to_async(Market.objects.get)(pk=feed.market_id)
            row = await database_sync_to_async(selectors.candle_current)(
                market=market, interval=interval, moment=timezone.now()
            )
            feed.candles.setdefault(interval, set()).add(subscriber)
            subscriber.push(frame("snapshot", f"candles.{interval}.{symbol}", row.as_dict() if row else None))

    def unsubscribe(self, subscriber: Subscriber, kind: str, symbol: str | None, interval: str | None) -> None:
        if kind == "tickers":
            self.tickers.discard(subscriber)
            return
        feed = self.feeds.get(symbol or "")
        if feed is None:
            return
        if kind == "candles":
            feed.candles.get(interval or "", set()).discard(subscriber)
        else:
            getattr(feed, kind).discard(subscriber)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (one per ASGI process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
