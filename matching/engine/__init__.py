"""Kootabase matching engine: a pure, deterministic order book.

No Django, no I/O, no clock, no randomness: ``OrderBook.apply(command)``
returns the list of events the command caused, and the same commands always
give the same events.  See ``docs/matching-engine.md`` for the semantics.

``OrderBook`` is the compiled core when it has been built
(``python -m matching.engine._native.build``) and ``PyOrderBook``, the pure
Python reference implementation, otherwise.  Both pass the same tests.
"""

from __future__ import annotations

from .book import PyOrderBook, Top
from .codec import AmountOutOfRange, CodecError, MarketSpec, PriceNotOnTick, QtyNotOnLot
from .commands import Amend, Cancel, Command, PlaceLimit, PlaceMarket, PlaceStop
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
    STP_DEFAULT,
    TRIGGER_ABOVE,
    TRIGGER_BELOW,
    Reason,
    Side,
    Stp,
    TimeInForce,
    Trigger,
)
from .events import (
    Accepted,
    Amended,
    Cancelled,
    Event,
    EventKind,
    Expired,
    Filled,
    Level,
    PartiallyFilled,
    Rejected,
    Trade,
    Triggered,
    event_from_tuple,
    event_to_dict,
    events_to_bytes,
)
from .snapshot import BookState, RestingOrder, SnapshotError, StopOrder

try:
    from .native import NativeOrderBook
except ImportError:  # not built: the pure engine serves
    NativeOrderBook = None  # type: ignore[assignment,misc]

OrderBook = NativeOrderBook if NativeOrderBook is not None else PyOrderBook

__all__ = [
    "BUY",
    "FOK",
    "GTC",
    "IOC",
    "MAX_INT",
    "SELL",
    "STP_CANCEL_BOTH",
    "STP_CANCEL_MAKER",
    "STP_CANCEL_TAKER",
    "STP_DEFAULT",
    "TRIGGER_ABOVE",
    "TRIGGER_BELOW",
    "Accepted",
    "Amend",
    "Amended",
    "AmountOutOfRange",
    "BookState",
    "Cancel",
    "Cancelled",
    "CodecError",
    "Command",
    "Event",
    "EventKind",
    "Expired",
    "Filled",
    "Level",
    "MarketSpec",
    "NativeOrderBook",
    "OrderBook",
    "PartiallyFilled",
    "PlaceLimit",
    "PlaceMarket",
    "PlaceStop",
    "PriceNotOnTick",
    "PyOrderBook",
    "QtyNotOnLot",
    "Reason",
    "Rejected",
    "RestingOrder",
    "Side",
    "SnapshotError",
    "StopOrder",
    "Stp",
    "TimeInForce",
    "Top",
    "Trade",
    "Trigger",
    "Triggered",
    "event_from_tuple",
    "event_to_dict",
    "events_to_bytes",
]
