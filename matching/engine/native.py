"""``NativeOrderBook``: the order book on the compiled core.

Same API and, event for event, the same behaviour as ``PyOrderBook``; the
tests hold both to the reference model and to each other.  Build the core in
place with ``python -m matching.engine._native.build`` (a C compiler and the
Python headers are all it needs).  Importing this module raises
``ImportError`` when the core has not been built, and ``matching.engine``
then serves ``PyOrderBook`` as ``OrderBook``.
"""

from __future__ import annotations

from ._native._book import Book, configure
from .book import Top
from .commands import Amend, Cancel, PlaceLimit, PlaceMarket, PlaceStop
from .events import (
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

configure(
    (PlaceLimit, PlaceMarket, PlaceStop, Cancel, Amend),
    (Accepted, Rejected, Trade, PartiallyFilled, Filled, Cancelled, Expired, Triggered, Amended, Level),
)


class NativeOrderBook(Book):
    """Order book backed by the compiled core.  ``apply`` is the C entry point."""

    __slots__ = ()

    def top(self) -> Top:
        return Top(*self._top())

    def order(self, order_id: int) -> RestingOrder | None:
        row = self._order(order_id)
        return None if row is None else RestingOrder(*row)

    def state(self) -> BookState:
        last_seq, last_price, bids, asks, stops = self._export()
        return BookState(
            last_seq,
            last_price,
            [RestingOrder(*r) for r in bids],
            [RestingOrder(*r) for r in asks],
            [StopOrder(*s) for s in stops],
        )

    def resting_orders(self, side: int) -> list[RestingOrder]:
        _, _, bids, asks, _ = self._export()
        return [RestingOrder(*r) for r in (bids if side == 1 else asks)]

    def stop_orders(self) -> list[StopOrder]:
        return [StopOrder(*s) for s in self._export()[4]]

    def stop_order(self, order_id: int) -> StopOrder | None:
        for s in self.stop_orders():
            if s.order_id == order_id:
                return s
        return None

    def snapshot(self) -> bytes:
        return encode_state(self.state())

    @classmethod
    def from_state(cls, state: BookState) -> NativeOrderBook:
        book = cls()
        book._import(state.last_seq, state.last_price, state.bids, state.asks, state.stops)
        return book

    @classmethod
    def restore(cls, data: bytes) -> NativeOrderBook:
        return cls.from_state(decode_state(data))


__all__ = ["NativeOrderBook"]
