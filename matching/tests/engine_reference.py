"""A deliberately simple model of the matching engine, for tests only.

Everything is a flat list scanned linearly: resting orders carry an arrival
stamp, and "the best order" is found by sorting on (price, stamp).  It is slow
and obviously correct; the engine's events must equal this model's events for
every command of a random stream.  It follows ``docs/matching-engine.md`` and
shares no code with the engine except the command, event and constant types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matching.engine import (
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
    Accepted,
    Amend,
    Amended,
    Cancel,
    Cancelled,
    EventKind,
    Expired,
    Filled,
    Level,
    PartiallyFilled,
    PlaceLimit,
    PlaceMarket,
    PlaceStop,
    Reason,
    Rejected,
    Trade,
    Triggered,
)

K = EventKind


@dataclass
class RefOrder:
    order_id: int
    owner_id: int
    side: int
    price: int
    remaining: int
    filled: int
    post_only: bool
    stp: int
    stamp: int


@dataclass
class RefStop:
    cmd: PlaceStop


class ReferenceBook:
    def __init__(self) -> None:
        self.last_seq = 0
        self.last_price = 0
        self.resting: list[RefOrder] = []
        self.stops: list[RefStop] = []  # acceptance order
        self.clock = 0
        self.traded = False

    # -- helpers ------------------------------------------------------------

    def stamp(self) -> int:
        self.clock += 1
        return self.clock

    def find(self, order_id: int) -> RefOrder | None:
        for o in self.resting:
            if o.order_id == order_id:
                return o
        return None

    def find_stop(self, order_id: int) -> RefStop | None:
        for s in self.stops:
            if s.cmd.order_id == order_id:
                return s
        return None

    def is_live(self, order_id: int) -> bool:
        return self.find(order_id) is not None or self.find_stop(order_id) is not None

    def side_orders(self, side: int) -> list[RefOrder]:
        """Resting orders of one side, best first, then oldest first."""
        orders = [o for o in self.resting if o.side == side]
        if side == BUY:
            return sorted(orders, key=lambda o: (-o.price, o.stamp))
        return sorted(orders, key=lambda o: (o.price, o.stamp))

    def level_total(self, side: int, price: int) -> int:
        return sum(o.remaining for o in self.resting if o.side == side and o.price == price)

    def depth(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        out = []
        for side in (BUY, SELL):
            prices: list[int] = []
            for o in self.side_orders(side):
                if o.price not in prices:
                    prices.append(o.price)
            out.append([(p, self.level_total(side, p)) for p in prices])
        return out[0], out[1]

    @staticmethod
    def acceptable(side: int, maker_price: int, limit: int) -> bool:
        if limit == 0:
            return True
        return maker_price <= limit if side == BUY else maker_price >= limit

    def would_take(self, side: int, price: int) -> bool:
        opposite = SELL if side == BUY else BUY
        return any(self.acceptable(side, o.price, price) for o in self.resting if o.side == opposite)

    # -- entry point --------------------------------------------------------

    def apply(self, cmd: Any) -> list[Any]:
        for v in cmd:
            if not isinstance(v, int) or v < 0 or v > MAX_INT:
                raise ValueError(cmd)
        if cmd.seq <= self.last_seq:
            return [Rejected(K.REJECTED, cmd.order_id, Reason.SEQ_NOT_INCREASING)]
        self.last_seq = cmd.seq
        ev: list[Any] = []
        self.traded = False
        if isinstance(cmd, PlaceLimit):
            self.place_limit(cmd, ev)
        elif isinstance(cmd, PlaceMarket):
            self.place_market(cmd, ev)
        elif isinstance(cmd, PlaceStop):
            self.place_stop(cmd, ev)
        elif isinstance(cmd, Cancel):
            self.cancel(cmd, ev)
        elif isinstance(cmd, Amend):
            self.amend(cmd, ev)
        if self.traded:
            self.fire_stops(ev)
        return ev

    # -- commands -----------------------------------------------------------

    def place_limit(self, c: PlaceLimit, ev: list[Any]) -> None:
        reason = None
        if c.side not in (BUY, SELL):
            reason = Reason.INVALID_SIDE
        elif c.price < 1:
            reason = Reason.INVALID_PRICE
        elif c.qty < 1:
            reason = Reason.INVALID_QTY
        elif c.tif not in (GTC, IOC, FOK) or (c.post_only and c.tif != GTC):
            reason = Reason.INVALID_TIF
        elif c.stp not in (STP_CANCEL_MAKER, STP_CANCEL_TAKER, STP_CANCEL_BOTH):
            reason = Reason.INVALID_STP
        elif self.is_live(c.order_id):
            reason = Reason.DUPLICATE_ORDER_ID
        elif c.post_only and self.would_take(c.side, c.price):
            reason = Reason.POST_ONLY_WOULD_TAKE
        if reason is not None:
            ev.append(Rejected(K.REJECTED, c.order_id, reason))
            return
        ev.append(Accepted(K.ACCEPTED, c.order_id, c.owner_id, c.side))
        self.run(c.order_id, c.owner_id, c.side, c.price, c.qty, None, c.tif, bool(c.post_only), c.stp, 0, ev)

    def place_market(self, c: PlaceMarket, ev: list[Any]) -> None:
        reason = None
        if c.side not in (BUY, SELL):
            reason = Reason.INVALID_SIDE
        elif c.qty == 0 and c.quote == 0:
            reason = Reason.INVALID_QTY
        elif c.stp not in (STP_CANCEL_MAKER, STP_CANCEL_TAKER, STP_CANCEL_BOTH):
            reason = Reason.INVALID_STP
        elif self.is_live(c.order_id):
            reason = Reason.DUPLICATE_ORDER_ID
        if reason is not None:
            ev.append(Rejected(K.REJECTED, c.order_id, reason))
            return
        ev.append(Accepted(K.ACCEPTED, c.order_id, c.owner_id, c.side))
        self.run_market(c.order_id, c.owner_id, c.side, c.qty, c.quote, c.protection_price, c.stp, ev)

    def place_stop(self, c: PlaceStop, ev: list[Any]) -> None:
        reason = None
        if c.side not in (BUY, SELL):
            reason = Reason.INVALID_SIDE
        elif c.trigger not in (TRIGGER_ABOVE, TRIGGER_BELOW):
            reason = Reason.INVALID_TRIGGER
        elif c.stop_price < 1 or (c.limit_price > 0 and c.protection_price > 0):
            reason = Reason.INVALID_PRICE
        elif (c.qty == 0 and c.quote == 0) or (c.limit_price > 0 and (c.qty == 0 or c.quote > 0)):
            reason = Reason.INVALID_QTY
        elif c.tif not in (GTC, IOC, FOK):
            reason = Reason.INVALID_TIF
        elif c.stp not in (STP_CANCEL_MAKER, STP_CANCEL_TAKER, STP_CANCEL_BOTH):
            reason = Reason.INVALID_STP
        elif self.is_live(c.order_id):
            reason = Reason.DUPLICATE_ORDER_ID
        elif self.last_price > 0 and self.condition_holds(c):
            reason = Reason.STOP_WOULD_TRIGGER
        if reason is not None:
            ev.append(Rejected(K.REJECTED, c.order_id, reason))
            return
        ev.append(Accepted(K.ACCEPTED, c.order_id, c.owner_id, c.side))
        self.stops.append(RefStop(c))

    def cancel(self, c: Cancel, ev: list[Any]) -> None:
        o = self.find(c.order_id)
        if o is not None:
            self.resting.remove(o)
            ev.append(Cancelled(K.CANCELLED, o.order_id, o.owner_id, o.filled, o.remaining, 0, Reason.USER_CANCEL))
            ev.append(Level(K.LEVEL, o.side, o.price, self.level_total(o.side, o.price)))
            return
        s = self.find_stop(c.order_id)
        if s is not None:
            self.stops.remove(s)
            ev.append(
                Cancelled(K.CANCELLED, s.cmd.order_id, s.cmd.owner_id, 0, s.cmd.qty, s.cmd.quote, Reason.USER_CANCEL)
            )
            return
        ev.append(Rejected(K.REJECTED, c.order_id, Reason.UNKNOWN_ORDER))

    def amend(self, c: Amend, ev: list[Any]) -> None:
        o = self.find(c.order_id)
        reason = None
        if o is None:
            reason = Reason.NOT_AMENDABLE if self.find_stop(c.order_id) else Reason.UNKNOWN_ORDER
        elif c.price < 1:
            reason = Reason.INVALID_PRICE
        elif c.qty <= o.filled:
            reason = Reason.INVALID_QTY
        elif o.post_only and c.price != o.price and self.would_take(o.side, c.price):
            reason = Reason.POST_ONLY_WOULD_TAKE
        if reason is not None:
            ev.append(Rejected(K.REJECTED, c.order_id, reason))
            return
        assert o is not None
        new_remaining = c.qty - o.filled
        if c.price == o.price and new_remaining <= o.remaining:
            changed = new_remaining != o.remaining
            o.remaining = new_remaining
            ev.append(Amended(K.AMENDED, o.order_id, o.owner_id, o.side, c.price, c.qty, new_remaining, 1))
            if changed:
                ev.append(Level(K.LEVEL, o.side, o.price, self.level_total(o.side, o.price)))
            return
        if c.price == o.price:
            o.remaining = new_remaining
            o.stamp = self.stamp()
            ev.append(Amended(K.AMENDED, o.order_id, o.owner_id, o.side, c.price, c.qty, new_remaining, 0))
            ev.append(Level(K.LEVEL, o.side, o.price, self.level_total(o.side, o.price)))
            return
        self.resting.remove(o)
        ev.append(Amended(K.AMENDED, o.order_id, o.owner_id, o.side, c.price, c.qty, new_remaining, 0))
        ev.append(Level(K.LEVEL, o.side, o.price, self.level_total(o.side, o.price)))
        self.run(o.order_id, o.owner_id, o.side, c.price, new_remaining, None, GTC, o.post_only, o.stp, o.filled, ev)

    # -- matching -----------------------------------------------------------

    def run_market(
        self, oid: int, owner: int, side: int, qty: int, quote: int, protection: int, stp: int, ev: list[Any]
    ) -> None:
        self.run(
            oid, owner, side, protection, qty if qty > 0 else None, quote if quote > 0 else None, IOC, False, stp, 0, ev
        )

    def fok_possible(self, side: int, limit: int, qty: int, owner: int, stp: int) -> bool:
        opposite = SELL if side == BUY else BUY
        available = 0
        for o in self.side_orders(opposite):
            if not self.acceptable(side, o.price, limit):
                break
            if o.owner_id == owner:
                if stp == STP_CANCEL_MAKER:
                    continue
                break
            available += o.remaining
        return available >= qty

    def run(
        self,
        oid: int,
        owner: int,
        side: int,
        limit: int,
        qty: int | None,
        quote: int | None,
        tif: int,
        post_only: bool,
        stp: int,
        filled: int,
        ev: list[Any],
    ) -> None:
        """qty None: no quantity cap; quote None: not sized by budget."""
        if tif == FOK and not self.fok_possible(side, limit, qty or 0, owner, stp):
            ev.append(Expired(K.EXPIRED, oid, owner, filled, qty or 0, 0, Reason.FOK_UNFILLABLE))
            return
        opposite = SELL if side == BUY else BUY
        traded = 0
        outcome = "open"  # open | size | budget | self
        while outcome == "open":
            book = [o for o in self.side_orders(opposite) if self.acceptable(side, o.price, limit)]
            if not book:
                break
            price = book[0].price
            touched = False
            for maker in [o for o in book if o.price == price]:
                if maker.owner_id == owner:
                    if stp == STP_CANCEL_TAKER:
                        outcome = "self"
                        break
                    self.resting.remove(maker)
                    touched = True
                    ev.append(
                        Cancelled(
                            K.CANCELLED,
                            maker.order_id,
                            maker.owner_id,
                            maker.filled,
                            maker.remaining,
                            0,
                            Reason.SELF_TRADE,
                        )
                    )
                    if stp == STP_CANCEL_BOTH:
                        outcome = "self"
                        break
                    continue
                q = maker.remaining
                if qty is not None:
                    q = min(q, qty - traded)
                if quote is not None:
                    if quote // price == 0:
                        outcome = "budget"
                        break
                    q = min(q, quote // price)
                    quote -= q * price
                touched = True
                traded += q
                maker.remaining -= q
                maker.filled += q
                ev.append(Trade(K.TRADE, maker.order_id, maker.owner_id, oid, owner, side, price, q))
                if maker.remaining > 0:
                    ev.append(
                        PartiallyFilled(
                            K.PARTIALLY_FILLED, maker.order_id, maker.owner_id, maker.filled, maker.remaining, 0, 0
                        )
                    )
                else:
                    self.resting.remove(maker)
                    ev.append(Filled(K.FILLED, maker.order_id, maker.owner_id, maker.filled, 0, 0, 0))
                self.last_price = price
                self.traded = True
                if qty is not None and traded == qty:
                    outcome = "size"
                    break
                if quote == 0:
                    outcome = "budget"
                    break
            if touched:
                ev.append(Level(K.LEVEL, opposite, price, self.level_total(opposite, price)))
        left = 0 if qty is None else qty - traded
        quote_left = 0 if quote is None else quote
        total_filled = filled + traded
        if outcome == "self":
            ev.append(Cancelled(K.CANCELLED, oid, owner, total_filled, left, quote_left, Reason.SELF_TRADE))
        elif outcome == "size" or (outcome == "budget" and traded > 0):
            ev.append(Filled(K.FILLED, oid, owner, total_filled, left, quote_left, 0))
        elif tif == GTC:
            if traded > 0:
                ev.append(PartiallyFilled(K.PARTIALLY_FILLED, oid, owner, total_filled, left, 0, 0))
            assert qty is not None
            self.resting.append(RefOrder(oid, owner, side, limit, left, total_filled, post_only, stp, self.stamp()))
            ev.append(Level(K.LEVEL, side, limit, self.level_total(side, limit)))
        else:
            ev.append(Expired(K.EXPIRED, oid, owner, total_filled, left, quote_left, Reason.IOC_REMAINDER))

    # -- stops --------------------------------------------------------------

    def condition_holds(self, c: PlaceStop) -> bool:
        if c.trigger == TRIGGER_ABOVE:
            return self.last_price >= c.stop_price
        return self.last_price <= c.stop_price

    def fire_stops(self, ev: list[Any]) -> None:
        while True:
            fired = [s for s in self.stops if self.condition_holds(s.cmd)]
            if not fired:
                return
            price = self.last_price
            for s in fired:
                self.stops.remove(s)
            for s in fired:
                c = s.cmd
                ev.append(Triggered(K.TRIGGERED, c.order_id, c.owner_id, c.side, price))
                if c.limit_price > 0:
                    self.run(c.order_id, c.owner_id, c.side, c.limit_price, c.qty, None, c.tif, False, c.stp, 0, ev)
                else:
                    self.run_market(c.order_id, c.owner_id, c.side, c.qty, c.quote, c.protection_price, c.stp, ev)
