"""The pure-Python order book: one market, price-time priority.

``PyOrderBook`` is the reference implementation of the engine semantics (the
compiled core, when built, must produce exactly the same events) and is used
as-is wherever the compiled core is not available.

Data layout: each side keeps a dict ``price -> _Level`` plus a sorted list of
its prices (ascending; the best ask is first, the best bid last).  A level is
a doubly linked FIFO of ``_Order`` objects, so adding at the tail, removing
any order and matching from the head are all O(1); finding a level is a dict
lookup and creating one is a ``bisect.insort``.  Held stop orders live in a
dict in acceptance order.

Semantics in brief (``docs/matching-engine.md`` has the full statement):

* Matching: an incoming order takes from the best opposite level, makers in
  arrival order, always at the maker's price, while its limit (or a market
  order's protection price) allows.
* Self-trade prevention is decided by the taker's ``stp`` mode when it meets
  a resting order of the same owner: ``CANCEL_MAKER`` (default) cancels the
  resting order and goes on; ``CANCEL_TAKER`` stops and cancels the incoming
  remainder; ``CANCEL_BOTH`` does both.  No trade is ever made between two
  orders of one owner.
* FOK: before touching the book, the engine checks that the whole quantity
  can trade within the limit (resting orders of the same owner count as
  absent under ``CANCEL_MAKER`` and as a stop under the other modes).  If
  not, the order expires with ``FOK_UNFILLABLE`` and nothing else happens.
* Market orders by quote budget buy or sell whole lots while the remaining
  budget covers one more lot at the maker's price; a lot at ``p`` ticks costs
  ``p`` quote units.  The order ends ``Filled`` when it traded and its size
  (lots or budget) is what stopped it, else ``Expired`` (``IOC_REMAINDER``).
* Stops fire on the last trade price after the command that moved it; all
  stops whose condition holds fire together, are executed one by one in the
  order they were accepted, and the check repeats on the new last price.
* Amend keeps time priority only for a same-price quantity decrease.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .commands import Amend, Cancel, PlaceLimit, PlaceMarket, PlaceStop
from .constants import (
    BUY,
    FOK,
    GTC,
    IOC,
    MAX_INT,
    SELL,
    STP_CANCEL_BOTH,
    STP_CANCEL_MAKER,
    STP_CANCEL_TAKER,
    TRIGGER_ABOVE,
    TRIGGER_BELOW,
    Reason,
)
from .events import (
    ACCEPTED,
    AMENDED,
    CANCELLED,
    EXPIRED,
    FILLED,
    LEVEL,
    PARTIALLY_FILLED,
    REJECTED,
    TRADE,
    TRIGGERED,
    Accepted,
    Amended,
    Cancelled,
    Expired,
    Filled,
    Level,
    PartiallyFilled,
    Rejected,
    Trade,
    Triggered,
)
from .snapshot import BookState, RestingOrder, StopOrder, decode_state, encode_state

_new = tuple.__new__

# reason codes as plain ints for the hot path
_R_SEQ = int(Reason.SEQ_NOT_INCREASING)
_R_SIDE = int(Reason.INVALID_SIDE)
_R_PRICE = int(Reason.INVALID_PRICE)
_R_QTY = int(Reason.INVALID_QTY)
_R_TIF = int(Reason.INVALID_TIF)
_R_STP = int(Reason.INVALID_STP)
_R_TRIGGER = int(Reason.INVALID_TRIGGER)
_R_DUP = int(Reason.DUPLICATE_ORDER_ID)
_R_UNKNOWN = int(Reason.UNKNOWN_ORDER)
_R_NOT_AMENDABLE = int(Reason.NOT_AMENDABLE)
_R_POST_ONLY = int(Reason.POST_ONLY_WOULD_TAKE)
_R_STOP_TRIGGER = int(Reason.STOP_WOULD_TRIGGER)
_R_USER = int(Reason.USER_CANCEL)
_R_SELF = int(Reason.SELF_TRADE)
_R_IOC = int(Reason.IOC_REMAINDER)
_R_FOK = int(Reason.FOK_UNFILLABLE)

_SIDES = (BUY, SELL)
_TIFS = (GTC, IOC, FOK)
_STPS = (STP_CANCEL_MAKER, STP_CANCEL_TAKER, STP_CANCEL_BOTH)
_TRIGGERS = (TRIGGER_ABOVE, TRIGGER_BELOW)

#: quantity cap of an order sized by quote budget only (larger than MAX_INT)
_UNCAPPED = 1 << 64

# why a taker stopped matching
_STOP_NONE = 0  # book exhausted or limit reached
_STOP_SIZE = 1  # quantity fully filled
_STOP_BUDGET = 2  # quote budget does not cover one more lot
_STOP_SELF = 3  # self-trade prevention cancelled the taker


class Top(NamedTuple):
    """Best bid and ask (price, aggregate qty); ``None`` for an empty side."""

    bid_price: int | None
    bid_qty: int | None
    ask_price: int | None
    ask_qty: int | None


def check_ints(cmd: tuple[Any, ...]) -> None:
    """Raise unless every field of ``cmd`` is an int in ``0..MAX_INT``."""
    for value in cmd:
        if not isinstance(value, int):
            raise TypeError(f"command fields must be ints, got {value!r} in {cmd!r}")
        if value < 0 or value > MAX_INT:
            raise ValueError(f"command field {value} out of range 0..2**63-1 in {cmd!r}")


class _Order:
    __slots__ = (
        "filled",
        "level",
        "next",
        "order_id",
        "owner_id",
        "post_only",
        "prev",
        "price",
        "remaining",
        "side",
        "stp",
    )

    def __init__(
        self,
        order_id: int,
        owner_id: int,
        side: int,
        price: int,
        remaining: int,
        filled: int,
        post_only: bool,
        stp: int,
    ) -> None:
        self.order_id = order_id
        self.owner_id = owner_id
        self.side = side
        self.price = price
        self.remaining = remaining
        self.filled = filled
        self.post_only = post_only
        self.stp = stp
        self.prev: _Order | None = None
        self.next: _Order | None = None
        self.level: _Level | None = None


class _Level:
    __slots__ = ("head", "price", "tail", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.total = 0
        self.head: _Order | None = None
        self.tail: _Order | None = None


class _Side:
    """One side of the book: levels by price and the sorted price list."""

    __slots__ = ("levels", "prices", "side")

    def __init__(self, side: int) -> None:
        self.side = side
        self.levels: dict[int, _Level] = {}
        self.prices: list[int] = []

    def best(self) -> int | None:
        prices = self.prices
        if not prices:
            return None
        return prices[-1] if self.side == BUY else prices[0]

    def prices_best_first(self) -> list[int]:
        return self.prices[::-1] if self.side == BUY else list(self.prices)


class PyOrderBook:
    """Order book of one market.  ``apply`` is the single entry point."""

    def __init__(self) -> None:
        self._last_seq = 0
        self._last_price = 0
        self._orders: dict[int, _Order] = {}
        self._stops: dict[int, StopOrder] = {}
        self._bids = _Side(BUY)
        self._asks = _Side(SELL)
        self._handlers: dict[type, Callable[[Any, list[Any]], None]] = {
            PlaceLimit: self._place_limit,
            PlaceMarket: self._place_market,
            PlaceStop: self._place_stop,
            Cancel: self._cancel,
            Amend: self._amend,
        }

    # ------------------------------------------------------------------ API

    def apply(self, cmd: Any) -> list[Any]:
        """Apply one command and return its events, in order."""
        handler = self._handlers.get(type(cmd))
        if handler is None:
            raise TypeError(f"not an engine command: {cmd!r}")
        check_ints(cmd)
        if cmd[0] <= self._last_seq:
            return [_new(Rejected, (REJECTED, cmd[1], _R_SEQ))]
        self._last_seq = cmd[0]
        events: list[Any] = []
        handler(cmd, events)
        return events

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def last_price(self) -> int | None:
        """Price of the last trade, ``None`` before the first one."""
        return self._last_price or None

    def top(self) -> Top:
        bid = self._bids.best()
        ask = self._asks.best()
        return Top(
            bid,
            None if bid is None else self._bids.levels[bid].total,
            ask,
            None if ask is None else self._asks.levels[ask].total,
        )

    def depth(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Best ``n`` levels per side as ``(price, qty)``, best first."""
        n = max(n, 0)
        out = []
        for side in (self._bids, self._asks):
            prices = side.prices[: -n - 1 : -1] if side.side == BUY else side.prices[:n]
            out.append([(p, side.levels[p].total) for p in prices])
        return out[0], out[1]

    def order(self, order_id: int) -> RestingOrder | None:
        """The resting order with this id, or ``None``."""
        o = self._orders.get(order_id)
        if o is None:
            return None
        return RestingOrder(o.order_id, o.owner_id, o.side, o.price, o.remaining, o.filled, int(o.post_only), o.stp)

    def stop_order(self, order_id: int) -> StopOrder | None:
        return self._stops.get(order_id)

    def resting_orders(self, side: int) -> list[RestingOrder]:
        """All resting orders of one side in priority order."""
        return list(self._iter_side(self._bids if side == BUY else self._asks))

    def stop_orders(self) -> list[StopOrder]:
        """Held stop orders in acceptance order."""
        return list(self._stops.values())

    def __len__(self) -> int:
        """Number of resting orders (held stops excluded)."""
        return len(self._orders)

    def state(self) -> BookState:
        return BookState(
            self._last_seq,
            self._last_price,
            list(self._iter_side(self._bids)),
            list(self._iter_side(self._asks)),
            list(self._stops.values()),
        )

    def snapshot(self) -> bytes:
        """Serialize the whole book (see :mod:`.snapshot`)."""
        return encode_state(self.state())

    @classmethod
    def from_state(cls, state: BookState) -> PyOrderBook:
        book = cls()
        book._last_seq = state.last_seq
        book._last_price = state.last_price
        for resting in (state.bids, state.asks):
            for r in resting:
                o = _Order(
                    r.order_id,
                    r.owner_id,
                    r.side,
                    r.price,
                    r.remaining,
                    r.filled,
                    bool(r.post_only),
                    r.stp,
                )
                book._rest(o)
        for s in state.stops:
            book._stops[s.order_id] = s
        return book

    @classmethod
    def restore(cls, data: bytes) -> PyOrderBook:
        """Rebuild a book from ``snapshot()`` bytes."""
        return cls.from_state(decode_state(data))

    # ------------------------------------------------------------- commands

    def _place_limit(self, cmd: PlaceLimit, ev: list[Any]) -> None:
        _, oid, owner, side, price, qty, tif, post_only, stp = cmd
        reason = 0
        if side != BUY and side != SELL:
            reason = _R_SIDE
        elif price < 1:
            reason = _R_PRICE
        elif qty < 1:
            reason = _R_QTY
        elif tif not in _TIFS or (post_only and tif != GTC):
            reason = _R_TIF
        elif stp not in _STPS:
            reason = _R_STP
        elif oid in self._orders or oid in self._stops:
            reason = _R_DUP
        elif post_only and self._crosses(side, price):
            reason = _R_POST_ONLY
        if reason:
            ev.append(_new(Rejected, (REJECTED, oid, reason)))
            return
        ev.append(_new(Accepted, (ACCEPTED, oid, owner, side)))
        price_before = self._last_price
        self._execute(oid, owner, side, price, qty, 0, False, tif, bool(post_only), stp, 0, ev)
        if self._last_price != price_before and self._stops:
            self._fire_stops(ev)

    def _place_market(self, cmd: PlaceMarket, ev: list[Any]) -> None:
        _, oid, owner, side, qty, quote, protection, stp = cmd
        reason = 0
        if side != BUY and side != SELL:
            reason = _R_SIDE
        elif qty == 0 and quote == 0:
            reason = _R_QTY
        elif stp not in _STPS:
            reason = _R_STP
        elif oid in self._orders or oid in self._stops:
            reason = _R_DUP
        if reason:
            ev.append(_new(Rejected, (REJECTED, oid, reason)))
            return
        ev.append(_new(Accepted, (ACCEPTED, oid, owner, side)))
        price_before = self._last_price
        self._execute_market(oid, owner, side, qty, quote, protection, stp, ev)
        if self._last_price != price_before and self._stops:
            self._fire_stops(ev)

    def _place_stop(self, cmd: PlaceStop, ev: list[Any]) -> None:
        (_, oid, owner, side, trigger, stop_price, qty, quote, limit_price, tif, protection, stp) = cmd
        reason = 0
        if side != BUY and side != SELL:
            reason = _R_SIDE
        elif trigger not in _TRIGGERS:
            reason = _R_TRIGGER
        elif stop_price < 1 or (limit_price and protection):
            reason = _R_PRICE
        elif (qty == 0 and quote == 0) or (limit_price and (qty == 0 or quote)):
            reason = _R_QTY
        elif tif not in _TIFS:
            reason = _R_TIF
        elif stp not in _STPS:
            reason = _R_STP
        elif oid in self._orders or oid in self._stops:
            reason = _R_DUP
        elif self._last_price and (
            self._last_price >= stop_price if trigger == TRIGGER_ABOVE else self._last_price <= stop_price
        ):
            reason = _R_STOP_TRIGGER
        if reason:
            ev.append(_new(Rejected, (REJECTED, oid, reason)))
            return
        ev.append(_new(Accepted, (ACCEPTED, oid, owner, side)))
        self._stops[oid] = StopOrder(
            oid, owner, side, trigger, stop_price, qty, quote, limit_price, tif, protection, stp
        )

    def _cancel(self, cmd: Cancel, ev: list[Any]) -> None:
        oid = cmd[1]
        o = self._orders.get(oid)
        if o is not None:
            level = self._remove(o)
            ev.append(_new(Cancelled, (CANCELLED, oid, o.owner_id, o.filled, o.remaining, 0, _R_USER)))
            ev.append(_new(Level, (LEVEL, o.side, o.price, level.total)))
            return
        s = self._stops.pop(oid, None)
        if s is not None:
            ev.append(_new(Cancelled, (CANCELLED, oid, s.owner_id, 0, s.qty, s.quote, _R_USER)))
            return
        ev.append(_new(Rejected, (REJECTED, oid, _R_UNKNOWN)))

    def _amend(self, cmd: Amend, ev: list[Any]) -> None:
        _, oid, price, qty = cmd
        o = self._orders.get(oid)
        reason = 0
        if o is None:
            reason = _R_NOT_AMENDABLE if oid in self._stops else _R_UNKNOWN
        elif price < 1:
            reason = _R_PRICE
        elif qty <= o.filled:
            reason = _R_QTY
        elif o.post_only and price != o.price and self._crosses(o.side, price):
            reason = _R_POST_ONLY
        if reason:
            ev.append(_new(Rejected, (REJECTED, oid, reason)))
            return
        assert o is not None
        level = o.level
        assert level is not None
        new_remaining = qty - o.filled
        side = o.side
        if price == o.price:
            if new_remaining <= o.remaining:
                # same price, not larger: keep time priority
                delta = o.remaining - new_remaining
                level.total -= delta
                o.remaining = new_remaining
                ev.append(_new(Amended, (AMENDED, oid, o.owner_id, side, price, qty, new_remaining, 1)))
                if delta:
                    ev.append(_new(Level, (LEVEL, side, price, level.total)))
                return
            else:
                # larger: to the back of the same level
                self._unlink(o, level)
                level.total += new_remaining - o.remaining
                o.remaining = new_remaining
                self._link(o, level)
                ev.append(_new(Amended, (AMENDED, oid, o.owner_id, side, price, qty, new_remaining, 0)))
            ev.append(_new(Level, (LEVEL, side, price, level.total)))
            return
        # new price: leave the book and come back as an incoming order
        self._remove(o)
        ev.append(_new(Amended, (AMENDED, oid, o.owner_id, side, price, qty, new_remaining, 0)))
        ev.append(_new(Level, (LEVEL, side, o.price, level.total)))
        price_before = self._last_price
        self._execute(
            oid,
            o.owner_id,
            side,
            price,
            new_remaining,
            0,
            False,
            GTC,
            o.post_only,
            o.stp,
            o.filled,
            ev,
        )
        if self._last_price != price_before and self._stops:
            self._fire_stops(ev)

    # ------------------------------------------------------------- matching

    def _crosses(self, side: int, price: int) -> bool:
        if side == BUY:
            prices = self._asks.prices
            return bool(prices) and prices[0] <= price
        prices = self._bids.prices
        return bool(prices) and prices[-1] >= price

    def _fok_fillable(self, side: int, limit: int, qty: int, owner: int, stp: int) -> bool:
        opp = self._asks if side == BUY else self._bids
        levels = opp.levels
        need = qty
        for p in opp.prices_best_first():
            if (p > limit) if side == BUY else (p < limit):
                return False
            o = levels[p].head
            while o is not None:
                if o.owner_id == owner:
                    if stp != STP_CANCEL_MAKER:
                        return False
                else:
                    need -= o.remaining
                    if need <= 0:
                        return True
                o = o.next
        return False

    def _execute_market(
        self,
        oid: int,
        owner: int,
        side: int,
        qty: int,
        quote: int,
        protection: int,
        stp: int,
        ev: list[Any],
    ) -> None:
        by_quote = quote > 0
        self._execute(oid, owner, side, protection, qty or _UNCAPPED, quote, by_quote, IOC, False, stp, 0, ev)

    def _execute(
        self,
        oid: int,
        owner: int,
        side: int,
        limit: int,
        qty: int,
        quote: int,
        by_quote: bool,
        tif: int,
        post_only: bool,
        stp: int,
        filled: int,
        ev: list[Any],
    ) -> None:
        """Run one incoming order against the book and settle its outcome.

        ``limit`` 0 means no price bound; ``qty`` is the open quantity
        (``_UNCAPPED`` when sized by quote alone); ``filled`` is what the
        order had already filled (an amended order).
        """
        if tif == FOK and not self._fok_fillable(side, limit, qty, owner, stp):
            ev.append(_new(Expired, (EXPIRED, oid, owner, filled, qty, 0, _R_FOK)))
            return
        capped = qty != _UNCAPPED
        rem, quote, traded, why = self._take(oid, owner, side, limit, qty, quote, by_quote, stp, ev)
        filled += traded
        shown = rem if capped else 0
        if why == _STOP_SELF:
            ev.append(_new(Cancelled, (CANCELLED, oid, owner, filled, shown, quote, _R_SELF)))
        elif rem == 0 or (why == _STOP_BUDGET and traded):
            ev.append(_new(Filled, (FILLED, oid, owner, filled, shown, quote, 0)))
        elif tif == GTC:
            if traded:
                ev.append(_new(PartiallyFilled, (PARTIALLY_FILLED, oid, owner, filled, rem, 0, 0)))
            o = _Order(oid, owner, side, limit, rem, filled, post_only, stp)
            level = self._rest(o)
            ev.append(_new(Level, (LEVEL, side, limit, level.total)))
        else:
            ev.append(_new(Expired, (EXPIRED, oid, owner, filled, shown, quote, _R_IOC)))

    def _take(
        self,
        oid: int,
        owner: int,
        side: int,
        limit: int,
        rem: int,
        quote: int,
        by_quote: bool,
        stp: int,
        ev: list[Any],
    ) -> tuple[int, int, int, int]:
        """Match against the opposite side; return (rem, quote, traded, why)."""
        buy = side == BUY
        opp = self._asks if buy else self._bids
        opp_side = opp.side
        prices = opp.prices
        levels = opp.levels
        orders = self._orders
        append = ev.append
        traded = 0
        why = _STOP_NONE
        while prices:
            p = prices[0] if buy else prices[-1]
            if limit and ((p > limit) if buy else (p < limit)):
                break
            level = levels[p]
            o = level.head
            touched = False
            while o is not None:
                nxt = o.next
                if o.owner_id == owner:
                    if stp == STP_CANCEL_TAKER:
                        why = _STOP_SELF
                        break
                    self._unlink(o, level)
                    level.total -= o.remaining
                    del orders[o.order_id]
                    touched = True
                    append(_new(Cancelled, (CANCELLED, o.order_id, o.owner_id, o.filled, o.remaining, 0, _R_SELF)))
                    if stp == STP_CANCEL_BOTH:
                        why = _STOP_SELF
                        break
                    o = nxt
                    continue
                q = o.remaining
                if rem < q:
                    q = rem
                if by_quote:
                    affordable = quote // p
                    if affordable == 0:
                        why = _STOP_BUDGET
                        break
                    if affordable < q:
                        q = affordable
                    quote -= q * p
                touched = True
                rem -= q
                traded += q
                level.total -= q
                o.filled += q
                o.remaining -= q
                append(_new(Trade, (TRADE, o.order_id, o.owner_id, oid, owner, side, p, q)))
                if o.remaining:
                    append(
                        _new(PartiallyFilled, (PARTIALLY_FILLED, o.order_id, o.owner_id, o.filled, o.remaining, 0, 0))
                    )
                else:
                    self._unlink(o, level)
                    del orders[o.order_id]
                    append(_new(Filled, (FILLED, o.order_id, o.owner_id, o.filled, 0, 0, 0)))
                self._last_price = p
                if rem == 0:
                    why = _STOP_SIZE
                    break
                if by_quote and quote == 0:
                    why = _STOP_BUDGET
                    break
                o = nxt
            if touched:
                append(_new(Level, (LEVEL, opp_side, p, level.total)))
            if level.head is None:
                del levels[p]
                if buy:
                    del prices[0]
                else:
                    prices.pop()
            if why:
                break
        return rem, quote, traded, why

    def _fire_stops(self, ev: list[Any]) -> None:
        """Fire every stop the last trade price reaches, until none is left."""
        stops = self._stops
        while stops:
            last = self._last_price
            batch = [
                s
                for s in stops.values()
                if (last >= s.stop_price if s.trigger == TRIGGER_ABOVE else last <= s.stop_price)
            ]
            if not batch:
                return
            for s in batch:
                del stops[s.order_id]
            for s in batch:
                ev.append(_new(Triggered, (TRIGGERED, s.order_id, s.owner_id, s.side, last)))
                if s.limit_price:
                    self._execute(
                        s.order_id,
                        s.owner_id,
                        s.side,
                        s.limit_price,
                        s.qty,
                        0,
                        False,
                        s.tif,
                        False,
                        s.stp,
                        0,
                        ev,
                    )
                else:
                    self._execute_market(
                        s.order_id,
                        s.owner_id,
                        s.side,
                        s.qty,
                        s.quote,
                        s.protection_price,
                        s.stp,
                        ev,
                    )

    # ------------------------------------------------------------ structure

    def _rest(self, o: _Order) -> _Level:
        side = self._bids if o.side == BUY else self._asks
        level = side.levels.get(o.price)
        if level is None:
            level = side.levels[o.price] = _Level(o.price)
            insort(side.prices, o.price)
        self._link(o, level)
        level.total += o.remaining
        self._orders[o.order_id] = o
        return level

    def _remove(self, o: _Order) -> _Level:
        """Take a resting order out of the book; drop its level if emptied."""
        level = o.level
        assert level is not None
        self._unlink(o, level)
        level.total -= o.remaining
        del self._orders[o.order_id]
        if level.head is None:
            side = self._bids if o.side == BUY else self._asks
            del side.levels[o.price]
            prices = side.prices
            del prices[bisect_left(prices, o.price)]
        return level

    @staticmethod
    def _link(o: _Order, level: _Level) -> None:
        o.level = level
        o.next = None
        tail = level.tail
        o.prev = tail
        if tail is None:
            level.head = o
        else:
            tail.next = o
        level.tail = o

    @staticmethod
    def _unlink(o: _Order, level: _Level) -> None:
        prev, nxt = o.prev, o.next
        if prev is None:
            level.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            level.tail = prev
        else:
            nxt.prev = prev
        o.prev = o.next = None

    def _iter_side(self, side: _Side) -> Iterator[RestingOrder]:
        for p in side.prices_best_first():
            o = side.levels[p].head
            while o is not None:
                yield RestingOrder(
                    o.order_id,
                    o.owner_id,
                    o.side,
                    o.price,
                    o.remaining,
                    o.filled,
                    int(o.post_only),
                    o.stp,
                )
                o = o.next
