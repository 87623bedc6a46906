"""The engine against the reference model on random command streams.

Hypothesis draws streams of every command type (with self-trades, stops,
bad fields and stale seqs) over a narrow price band so that orders cross
often; the engine's events must equal the model's, command for command, and
the book invariants are checked after every command.

``ENGINE_HYPOTHESIS_EXAMPLES`` scales the number of streams; runs are
derandomized unless ``ENGINE_HYPOTHESIS_RANDOM=1``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching.engine import (
    BUY,
    FOK,
    SELL,
    Amend,
    Cancel,
    EventKind,
    PlaceLimit,
    PlaceMarket,
    PlaceStop,
    PyOrderBook,
)

from .engine_reference import ReferenceBook

K = EventKind
EXAMPLES = int(os.environ.get("ENGINE_HYPOTHESIS_EXAMPLES", "250"))
engine_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("ENGINE_HYPOTHESIS_RANDOM") != "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _mostly(valid: list[int], invalid: list[int], times: int = 40) -> st.SearchStrategy[int]:
    """One of ``valid``, with an occasional member of ``invalid``.

    ``sampled_from`` over a long list draws close to uniformly, unlike a
    bounded ``integers`` (which favours its ends).
    """
    values = valid * times
    middle = len(values) // 2
    return st.sampled_from(values[:middle] + invalid + values[middle:])


order_ids = st.integers(0, 20)  # a selector, see build_commands
owners = st.sampled_from([1, 2, 3])
sides = _mostly([BUY, SELL], [0, 3])
prices = _mostly([100, 99, 101, 98, 102, 97, 103], [0], times=20)
qtys = _mostly([3, 1, 2, 4, 5, 6, 7, 8, 9], [0], times=12)
tifs = _mostly([1, 1, 1, 1, 2, 3], [0, 4], times=15)
stps = _mostly([1, 1, 2, 3], [0, 4], times=20)
post_only = st.sampled_from([False] * 5 + [True])

limit_cmd = st.tuples(st.just("limit"), order_ids, owners, sides, prices, qtys, tifs, post_only, stps)
market_cmd = st.tuples(
    st.just("market"),
    order_ids,
    owners,
    sides,
    st.sampled_from([5, 1, 3, 15, 0, 0]),
    st.sampled_from([0, 0, 250, 700, 1500, 50]),
    st.sampled_from([0, 0, 97, 99, 101, 103]),
    stps,
)
stop_cmd = st.tuples(
    st.just("stop"),
    order_ids,
    owners,
    sides,
    _mostly([1, 2], [0]),
    prices,
    st.sampled_from([2, 1, 5, 0]),
    st.sampled_from([0, 0, 300]),
    st.sampled_from([0, 0, 98, 100, 102]),
    tifs,
    st.sampled_from([0, 0, 99, 101]),
    stps,
)
cancel_cmd = st.tuples(st.just("cancel"), st.integers(0, 21))
amend_cmd = st.tuples(st.just("amend"), st.integers(0, 21), prices, st.integers(0, 12))

any_cmd = st.one_of(
    limit_cmd,
    limit_cmd,
    limit_cmd,
    limit_cmd,
    limit_cmd,
    market_cmd,
    stop_cmd,
    stop_cmd,
    cancel_cmd,
    amend_cmd,
    amend_cmd,
)
streams = st.lists(st.tuples(any_cmd, st.integers(0, 40)), min_size=20, max_size=80)


def build_commands(raw: list[tuple[tuple[Any, ...], int]]) -> list[Any]:
    """Turn drawn specs into commands.

    Placements mostly get a fresh order id (1 in 20 reuses a recent one, to
    exercise duplicate ids); cancels and amends mostly target one of the
    recently placed ids.  Each command gets the next seq, and now and then a
    stale one.
    """
    cmds = []
    seq = 0
    placed: list[int] = []
    for spec, stale in raw:
        kind, pick, *fields = spec
        if kind in ("cancel", "amend"):
            order_id = placed[-1 - pick % len(placed)] if placed and pick < 20 else 1000 + pick
        elif pick == 0 and placed:
            order_id = placed[-1 - stale % len(placed)]
        else:
            order_id = len(placed) + 1
            placed.append(order_id)
        if stale == 0 and seq > 0:
            s = seq - (seq % 3)  # not greater than the last applied seq
        else:
            seq += 1 + (stale % 2)
            s = seq
        cls = {"limit": PlaceLimit, "market": PlaceMarket, "stop": PlaceStop, "cancel": Cancel, "amend": Amend}[kind]
        cmds.append(cls(s, order_id, *fields))
    return cmds


@dataclass
class Tracked:
    qty: int | None  # total quantity, None for a quote-only market order
    quote: int = 0
    price: int = 0  # resting price, once known
    fok: bool = False
    post_only: bool = False
    traded: int = 0
    spent: int = 0
    done: bool = False


@dataclass
class InvariantChecker:
    """Checks the engine's promises from its events and queries."""

    book: Any
    orders: dict[int, Tracked] = field(default_factory=dict)
    depth: dict[tuple[int, int], int] = field(default_factory=dict)
    arrival: dict[int, int] = field(default_factory=dict)  # when each resting order took its place
    clock: int = 0

    def accepted(self, cmd: Any) -> Tracked:
        if isinstance(cmd, PlaceLimit):
            return Tracked(cmd.qty, price=cmd.price, fok=cmd.tif == FOK, post_only=bool(cmd.post_only))
        if isinstance(cmd, PlaceMarket):
            return Tracked(cmd.qty or None, quote=cmd.quote)
        assert isinstance(cmd, PlaceStop)
        if cmd.limit_price:
            return Tracked(cmd.qty, price=cmd.limit_price, fok=cmd.tif == FOK)
        return Tracked(cmd.qty or None, quote=cmd.quote)

    def check(self, cmd: Any, events: list[Any]) -> None:
        taker: int | None = None
        traded_in_cmd: dict[int, int] = defaultdict(int)
        entered: list[int] = []  # orders that may have taken a new place in the queue, in order
        for ev in events:
            kind = ev[0]
            if kind == K.ACCEPTED:
                assert ev.order_id not in self.orders or self.orders[ev.order_id].done
                self.orders[ev.order_id] = self.accepted(cmd)
                taker = ev.order_id
                entered.append(taker)
            elif kind == K.TRIGGERED:
                taker = ev.order_id
                entered.append(taker)
            elif kind == K.AMENDED:
                t = self.orders[ev.order_id]
                t.qty = ev.qty
                t.price = ev.price
                assert ev.qty == ev.remaining + t.traded
                taker = ev.order_id
                if not ev.kept_priority:
                    entered.append(taker)
            elif kind == K.TRADE:
                maker, tk = self.orders[ev.maker_order_id], self.orders[ev.taker_order_id]
                assert ev.taker_order_id == taker, "only the incoming order takes"
                assert ev.price == maker.price, "trades happen at the maker's price"
                assert not tk.post_only, "post-only never takes"
                assert ev.maker_owner_id != ev.taker_owner_id, "no self-trade"
                assert ev.qty > 0
                if tk.price:
                    assert (ev.price <= tk.price) if ev.taker_side == BUY else (ev.price >= tk.price)
                for t in (maker, tk):
                    t.traded += ev.qty
                    t.spent += ev.qty * ev.price
                traded_in_cmd[ev.taker_order_id] += ev.qty
            elif kind in (K.FILLED, K.CANCELLED, K.EXPIRED, K.PARTIALLY_FILLED):
                t = self.orders[ev.order_id]
                assert not t.done
                assert ev.filled == t.traded, "reported fills equal the trades"
                if t.qty is not None:
                    assert ev.filled + ev.remaining == t.qty, "quantity is conserved"
                if t.quote:
                    assert ev[0] == K.PARTIALLY_FILLED or t.spent + ev.quote_left == t.quote, "budget is conserved"
                if kind == K.FILLED and t.qty is not None and not t.quote:
                    assert ev.remaining == 0
                if t.fok and kind != K.PARTIALLY_FILLED and ev.order_id == taker:
                    assert (kind == K.FILLED and ev.filled == t.qty) or (
                        kind == K.EXPIRED and traded_in_cmd[ev.order_id] == 0
                    ), "FOK is all or nothing"
                t.done = kind != K.PARTIALLY_FILLED
            elif kind == K.LEVEL:
                if ev.qty:
                    self.depth[ev.side, ev.price] = ev.qty
                else:
                    self.depth.pop((ev.side, ev.price), None)
        # the book is never crossed
        top = self.book.top()
        if top.bid_price is not None and top.ask_price is not None:
            assert top.bid_price < top.ask_price, "crossed book"
        # depth rebuilt from Level events equals the book's depth
        bids, asks = self.book.depth(10_000)
        assert {(BUY, p): q for p, q in bids} | {(SELL, p): q for p, q in asks} == self.depth
        # price, then time priority; resting orders conserve quantity
        for oid in entered:
            self.clock += 1
            self.arrival[oid] = self.clock
        for side in (BUY, SELL):
            resting = self.book.resting_orders(side)
            keys = [((-r.price if side == BUY else r.price), self.arrival[r.order_id]) for r in resting]
            assert keys == sorted(keys), "price, then time priority"
            for r in resting:
                t = self.orders[r.order_id]
                assert not t.done and r.price == t.price
                assert r.filled == t.traded and r.filled + r.remaining == t.qty


def run_against_model(book: Any, cmds: list[Any]) -> None:
    model = ReferenceBook()
    checker = InvariantChecker(book)
    for cmd in cmds:
        got = book.apply(cmd)
        want = model.apply(cmd)
        assert got == want, f"diverged at {cmd}"
        checker.check(cmd, got)
        assert book.depth(10_000) == model.depth()
    assert book.last_seq == model.last_seq
    assert (book.last_price or 0) == model.last_price


@engine_settings
@given(streams)
def test_engine_equals_reference_model(raw: list[tuple[tuple[Any, ...], int]]) -> None:
    run_against_model(PyOrderBook(), build_commands(raw))


one_owner_streams = st.lists(
    st.tuples(st.one_of(limit_cmd, market_cmd, amend_cmd, cancel_cmd), st.integers(1, 40)), min_size=20, max_size=60
)


@engine_settings
@given(one_owner_streams, st.sampled_from([1, 2, 3]))
def test_self_trade_prevention_matches_model(raw: list[tuple[tuple[Any, ...], int]], owner_count: int) -> None:
    """Few owners: self-trade prevention is exercised on most crossings."""
    cmds = []
    for cmd in build_commands(raw):
        if hasattr(cmd, "owner_id"):
            cmd = cmd._replace(owner_id=1 + cmd.owner_id % owner_count)
        cmds.append(cmd)
    run_against_model(PyOrderBook(), cmds)
