"""Worked examples of the engine's documented semantics (both engines)."""

from __future__ import annotations

from typing import Any

import pytest

from matching.engine import (
    BUY,
    FOK,
    IOC,
    SELL,
    STP_CANCEL_BOTH,
    STP_CANCEL_TAKER,
    TRIGGER_ABOVE,
    TRIGGER_BELOW,
    Accepted,
    Amend,
    Amended,
    Cancel,
    Cancelled,
    Expired,
    Filled,
    Level,
    NativeOrderBook,
    PartiallyFilled,
    PlaceLimit,
    PlaceMarket,
    PlaceStop,
    PyOrderBook,
    Reason,
    Rejected,
    Trade,
    Triggered,
)

ENGINES = [PyOrderBook] + ([NativeOrderBook] if NativeOrderBook is not None else [])


@pytest.fixture(params=ENGINES, ids=lambda cls: cls.__name__)
def book(request: pytest.FixtureRequest) -> Any:
    return request.param()


class Feed:
    """Numbers seqs for readability."""

    def __init__(self, book: Any) -> None:
        self.book = book
        self.seq = 0

    def __call__(self, cls: type, *args: Any, **kwargs: Any) -> list[Any]:
        self.seq += 1
        return self.book.apply(cls(self.seq, *args, **kwargs))


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_price_then_time_priority_at_the_makers_price(book: Any) -> None:
    f = Feed(book)
    f(PlaceLimit, 1, 10, SELL, 101, 2)
    f(PlaceLimit, 2, 11, SELL, 100, 2)
    f(PlaceLimit, 3, 12, SELL, 100, 2)
    ev = f(PlaceLimit, 4, 20, BUY, 105, 5)
    assert [e for e in ev if isinstance(e, Trade)] == [
        Trade(3, 2, 11, 4, 20, BUY, 100, 2),
        Trade(3, 3, 12, 4, 20, BUY, 100, 2),
        Trade(3, 1, 10, 4, 20, BUY, 101, 1),
    ]
    assert ev[-3:] == [
        PartiallyFilled(4, 1, 10, 1, 1, 0, 0),
        Level(10, SELL, 101, 1),
        Filled(5, 4, 20, 5, 0, 0, 0),
    ]
    assert Level(10, SELL, 100, 0) in ev
    assert book.top() == (None, None, 101, 1)


def test_post_only_that_would_take_is_rejected(book: Any) -> None:
    f = Feed(book)
    f(PlaceLimit, 1, 10, SELL, 100, 2)
    assert f(PlaceLimit, 2, 20, BUY, 100, 1, post_only=True) == [Rejected(2, 2, Reason.POST_ONLY_WOULD_TAKE)]
    assert f(PlaceLimit, 3, 20, BUY, 99, 1, post_only=True) == [Accepted(1, 3, 20, BUY), Level(10, BUY, 99, 1)]
    assert f(PlaceLimit, 4, 20, BUY, 99, 1, tif=IOC, post_only=True) == [Rejected(2, 4, Reason.INVALID_TIF)]
    assert f(Amend, 3, 100, 1) == [Rejected(2, 3, Reason.POST_ONLY_WOULD_TAKE)]


def test_fok_is_all_or_nothing(book: Any) -> None:
    f = Feed(book)
    f(PlaceLimit, 1, 10, SELL, 100, 2)
    f(PlaceLimit, 2, 11, SELL, 101, 2)
    assert f(PlaceLimit, 3, 20, BUY, 101, 5, tif=FOK) == [
        Accepted(1, 3, 20, BUY),
        Expired(7, 3, 20, 0, 5, 0, Reason.FOK_UNFILLABLE),
    ]
    assert book.depth(5) == ([], [(100, 2), (101, 2)])
    ev = f(PlaceLimit, 4, 20, BUY, 101, 4, tif=FOK)
    assert ev[-1] == Filled(5, 4, 20, 4, 0, 0, 0)
    # the owner's own resting order does not count under CANCEL_TAKER
    f(PlaceLimit, 5, 20, SELL, 102, 2)
    f(PlaceLimit, 6, 11, SELL, 102, 2)
    assert f(PlaceLimit, 7, 20, BUY, 102, 2, tif=FOK, stp=STP_CANCEL_TAKER)[-1][0] == 7  # expired
    assert f(PlaceLimit, 8, 20, BUY, 102, 2, tif=FOK)[-1] == Filled(5, 8, 20, 2, 0, 0, 0)


def test_ioc_remainder_expires(book: Any) -> None:
    f = Feed(book)
    f(PlaceLimit, 1, 10, SELL, 100, 2)
    ev = f(PlaceLimit, 2, 20, BUY, 100, 5, tif=IOC)
    assert ev[-1] == Expired(7, 2, 20, 2, 3, 0, Reason.IOC_REMAINDER)
    assert book.depth(5) == ([], [])


def test_market_buy_by_quote_fills_whole_lots_and_returns_the_rest(book: Any) -> None:
    f = Feed(book)
    f(PlaceLimit, 1, 10, SELL, 100, 2)
    f(PlaceLimit, 2, 10, SELL, 110, 5)
    ev = f(PlaceMarket, 3, 20, BUY, quote=450)
    trades = [e for e in ev if isinstance(e, Trade)]
    assert [(t.price, t.qty) for t in trades] == [(100, 2), (110, 2)]
    assert ev[-1] == Filled(5, 3, 20, 4, 0, 30, 0)  # 450 - 200 - 220 = 30 < 110
    # with a base cap as well, whichever runs out first stops it
    ev = f(PlaceMarket, 4, 20, BUY, qty=1, quote=1000)
    assert ev[-1] == Filled(5, 4, 20, 1, 0, 890, 0)
    # budget too small for a single lot
    assert f(PlaceMarket, 5, 20, BUY, quote=50)[-1] == Expired(7, 5, 20, 0, 0, 50, Reason.IOC_REMAINDER)


def test_market_protection_price_bounds_the_sweep(book: Any) -> None:
    f = Feed(book)
    f(PlaceLimit, 1, 10, BUY, 100, 1)
    f(PlaceLimit, 2, 10, BUY, 90, 1)
    ev = f(PlaceMarket, 3, 20, SELL, qty=2, protection_price=95)
    assert [e.price for e in ev if isinstance(e, Trade)] == [100]
    assert ev[-1] == Expired(7, 3, 20, 1, 1, 0, Reason.IOC_REMAINDER)
    assert book.top() == (90, 1, None, None)


def test_stops_fire_in_acceptance_order_and_cascade(book: Any) -> None:
    f = Feed(book)
    f(PlaceLimit, 1, 10, SELL, 100, 1)
    f(PlaceLimit, 2, 10, SELL, 105, 1)
    f(PlaceLimit, 3, 10, SELL, 110, 1)
    f(PlaceLimit, 4, 11, BUY, 90, 5)
    # before any trade a stop is held whatever its price
    f(PlaceStop, 50, 30, BUY, TRIGGER_ABOVE, 105, qty=1)  # fires when 105 trades
    f(PlaceStop, 51, 31, BUY, TRIGGER_ABOVE, 100, qty=1)  # accepted later, fires first at 100
    f(PlaceStop, 52, 32, SELL, TRIGGER_BELOW, 95, qty=1, limit_price=90)
    ev = f(PlaceLimit, 5, 20, BUY, 100, 1)
    order = [(type(e).__name__, e[1]) for e in ev if isinstance(e, (Triggered, Trade))]
    assert order == [("Trade", 1), ("Triggered", 51), ("Trade", 2), ("Triggered", 50), ("Trade", 3)]
    assert book.last_price == 110
    assert [s.order_id for s in book.stop_orders()] == [52]
    # a stop that would fire at once is refused
    assert f(PlaceStop, 53, 30, SELL, TRIGGER_BELOW, 120, qty=1) == [Rejected(2, 53, Reason.STOP_WOULD_TRIGGER)]
    assert f(Cancel, 52)[0] == Cancelled(6, 52, 32, 0, 1, 0, Reason.USER_CANCEL)
    assert f(Amend, 52, 100, 1) == [Rejected(2, 52, Reason.UNKNOWN_ORDER)]


def test_self_trade_prevention_modes(book: Any) -> None:
    f = Feed(book)
    f(PlaceLimit, 1, 7, SELL, 100, 1)
    f(PlaceLimit, 2, 8, SELL, 100, 1)
    # default: cancel the resting order of the same owner, keep matching
    ev = f(PlaceLimit, 3, 7, BUY, 100, 2)
    assert kinds(ev) == ["Accepted", "Cancelled", "Trade", "Filled", "Level", "PartiallyFilled", "Level"]
    assert ev[1] == Cancelled(6, 1, 7, 0, 1, 0, Reason.SELF_TRADE)
    # cancel taker: the resting order stays
    f(PlaceLimit, 4, 8, SELL, 101, 1)
    ev = f(PlaceLimit, 5, 3, SELL, 100, 3, stp=STP_CANCEL_TAKER)  # trades with 3 first
    f(PlaceLimit, 6, 7, SELL, 99, 1, stp=STP_CANCEL_TAKER)
    assert book.top().ask_price == 99
    ev = f(PlaceLimit, 7, 8, BUY, 101, 4, stp=STP_CANCEL_TAKER)
    assert kinds(ev) == ["Accepted", "Trade", "Filled", "Level", "Trade", "Filled", "Level", "Cancelled"]
    assert ev[-1] == Cancelled(6, 7, 8, 3, 1, 0, Reason.SELF_TRADE)
    assert book.top().ask_price == 101
    # cancel both
    ev = f(PlaceLimit, 8, 8, BUY, 101, 1, stp=STP_CANCEL_BOTH)
    assert kinds(ev) == ["Accepted", "Cancelled", "Level", "Cancelled"]
    assert book.depth(5) == ([], [])


def test_amend_priority_rules(book: Any) -> None:
    f = Feed(book)
    f(PlaceLimit, 1, 10, SELL, 100, 5)
    f(PlaceLimit, 2, 11, SELL, 100, 5)
    assert f(Amend, 1, 100, 3) == [Amended(9, 1, 10, SELL, 100, 3, 3, 1), Level(10, SELL, 100, 8)]
    assert [o.order_id for o in book.resting_orders(SELL)] == [1, 2]
    assert f(Amend, 1, 100, 4) == [Amended(9, 1, 10, SELL, 100, 4, 4, 0), Level(10, SELL, 100, 9)]
    assert [o.order_id for o in book.resting_orders(SELL)] == [2, 1]
    f(PlaceLimit, 3, 12, BUY, 98, 2)
    ev = f(Amend, 1, 98, 4)  # crosses: trades as an incoming order
    assert ev[:3] == [
        Amended(9, 1, 10, SELL, 98, 4, 4, 0),
        Level(10, SELL, 100, 5),
        Trade(3, 3, 12, 1, 10, SELL, 98, 2),
    ]
    assert ev[-2:] == [PartiallyFilled(4, 1, 10, 2, 2, 0, 0), Level(10, SELL, 98, 2)]
    assert f(Amend, 1, 98, 2) == [Rejected(2, 1, Reason.INVALID_QTY)]  # not above what filled


def test_seq_must_increase_and_bad_values_change_nothing(book: Any) -> None:
    book.apply(PlaceLimit(5, 1, 1, BUY, 100, 1))
    assert book.apply(PlaceLimit(5, 2, 1, BUY, 100, 1)) == [Rejected(2, 2, Reason.SEQ_NOT_INCREASING)]
    with pytest.raises(TypeError):
        book.apply(PlaceLimit(6, 2, 1, BUY, 100.5, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        book.apply(PlaceLimit(6, 2, 1, BUY, 2**63, 1))
    with pytest.raises(TypeError):
        book.apply(("not", "a", "command"))
    assert book.last_seq == 5
    assert book.apply(PlaceLimit(6, 1, 1, BUY, 100, 1)) == [Rejected(2, 1, Reason.DUPLICATE_ORDER_ID)]
    assert book.apply(Cancel(7, 99)) == [Rejected(2, 99, Reason.UNKNOWN_ORDER)]
    assert book.last_seq == 7


def test_queries(book: Any) -> None:
    f = Feed(book)
    for i, price in enumerate([100, 99, 99, 98, 101, 102]):
        f(PlaceLimit, i + 1, 1, BUY if price < 100.5 and price != 101 else SELL, price, i + 1)
    assert book.top() == (100, 1, 101, 5)
    assert book.depth(2) == ([(100, 1), (99, 5)], [(101, 5), (102, 6)])
    assert book.depth(0) == book.depth(-1) == ([], [])
    assert book.depth(100) == ([(100, 1), (99, 5), (98, 4)], [(101, 5), (102, 6)])
    assert book.order(2).remaining == 2
    assert book.order(42) is None
    assert len(book) == 6
