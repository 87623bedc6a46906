"""The compiled core against the pure engine and the reference model.

Skipped when the core has not been built
(``python -m matching.engine._native.build``).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from matching.engine import (
    BUY,
    SELL,
    NativeOrderBook,
    PlaceLimit,
    PlaceMarket,
    PyOrderBook,
)

from .test_engine_model import build_commands, engine_settings, run_against_model, streams

pytestmark = pytest.mark.skipif(NativeOrderBook is None, reason="compiled core not built")


@engine_settings
@given(streams)
def test_native_equals_reference_model(raw: list[Any]) -> None:
    run_against_model(NativeOrderBook(), build_commands(raw))


@engine_settings
@given(streams)
def test_native_equals_pure_engine_with_state(raw: list[Any]) -> None:
    native, pure = NativeOrderBook(), PyOrderBook()
    for cmd in build_commands(raw):
        assert native.apply(cmd) == pure.apply(cmd)
        assert native.top() == pure.top()
        assert native.state() == pure.state()


def test_native_events_are_the_engine_types() -> None:
    book = NativeOrderBook()
    book.apply(PlaceLimit(1, 1, 1, SELL, 10, 5))
    events = book.apply(PlaceLimit(2, 2, 2, BUY, 10, 2))
    ref = PyOrderBook()
    ref.apply(PlaceLimit(1, 1, 1, SELL, 10, 5))
    expected = ref.apply(PlaceLimit(2, 2, 2, BUY, 10, 2))
    assert [type(e) for e in events] == [type(e) for e in expected]
    assert [e._asdict() for e in events] == [e._asdict() for e in expected]
    assert all(type(v) is int for e in events for v in e)


def test_native_handles_large_values() -> None:
    big = 2**63 - 1
    book, ref = NativeOrderBook(), PyOrderBook()
    for b in (book, ref):
        for i in range(3):
            b.apply(PlaceLimit(1 + i, big - i, big, SELL, big, big))
    assert book.depth(1) == ref.depth(1) == ([], [(big, 3 * big)])
    cmd = PlaceMarket(10, 5, 1, BUY, quote=big)
    assert book.apply(cmd) == ref.apply(cmd)
    assert book.snapshot() == ref.snapshot()


def test_many_orders_and_id_map_growth() -> None:
    book, ref = NativeOrderBook(), PyOrderBook()
    seq = 0
    for i in range(20_000):
        seq += 1
        cmd = PlaceLimit(seq, i * 7919, i % 13, BUY if i % 2 else SELL, 1000 + (i % 2) * -500 + i % 97, 1 + i % 5)
        assert book.apply(cmd) == ref.apply(cmd)
    from matching.engine import Cancel

    for i in range(0, 20_000, 3):
        seq += 1
        assert book.apply(Cancel(seq, i * 7919)) == ref.apply(Cancel(seq, i * 7919))
    assert len(book) == len(ref)
    assert book.snapshot() == ref.snapshot()


def test_native_core_does_not_leak() -> None:
    """Commands that leave the book as it was must not grow memory."""
    import gc
    import tracemalloc

    from matching.engine import TRIGGER_BELOW, Amend, Cancel, PlaceStop

    book = NativeOrderBook()
    book.apply(PlaceLimit(1, 1, 5, SELL, 100, 10**12))
    seq = 1

    def cycle() -> None:
        nonlocal seq
        for cmd in (
            PlaceLimit(seq + 1, 1_000_001, 6, BUY, 99, 3),
            Amend(seq + 2, 1_000_001, 99, 2),
            Amend(seq + 3, 1_000_001, 100, 4),  # crosses and fills
            PlaceMarket(seq + 4, 1_000_002, 7, BUY, quote=450),
            PlaceStop(seq + 5, 1_000_003, 8, SELL, TRIGGER_BELOW, 50, qty=1),
            PlaceLimit(seq + 6, 1_000_003, 8, SELL, 120, 1),  # duplicate id
            Cancel(seq + 7, 1_000_003),
            PlaceLimit(seq + 8, 1_000_004, 5, BUY, 100, 1),  # self-trade: cancels the big ask
            PlaceLimit(seq + 9, 1, 5, SELL, 100, 10**12),
            Cancel(seq + 10, 424242),
            PlaceLimit(seq + 10, 7, 7, BUY, 1, 1),  # stale seq
            PlaceStop(seq + 11, 1_000_005, 8, SELL, TRIGGER_BELOW, 99, qty=1),
            PlaceLimit(seq + 12, 1_000_006, 9, BUY, 98, 2),
            PlaceMarket(seq + 13, 1_000_007, 10, SELL, qty=1),  # trades at 98, fires the stop
        ):
            book.apply(cmd)
        seq += 13
        assert book.last_price == 98

    for _ in range(500):
        cycle()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(5_000):
        cycle()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 64 * 1024, f"memory grew by {grown} bytes over 70,000 commands"
    assert len(book) == 1
