"""Events returned by :meth:`OrderBook.apply`.

Each event is a ``NamedTuple`` of plain ints whose first field, ``kind``, is
one of the ``EventKind`` codes below, so two events are equal exactly when
they are the same kind with the same values, ``tuple(event)`` is its stable
serial form and ``event_to_dict`` gives a named form.

Order of events for one command
-------------------------------
1. ``Rejected`` alone, or for a placement ``Accepted`` / for an amendment
   ``Amended`` (followed, for an amendment that keeps its price, by the
   ``Level`` of that price) / for a cancel ``Cancelled`` and ``Level``.
2. Matching, maker by maker in price-time priority: ``Trade`` followed by
   the maker's ``PartiallyFilled`` or ``Filled``, or, for self-trade
   prevention, the maker's ``Cancelled`` (reason ``SELF_TRADE``).  When the
   taker leaves a price level it touched, ``Level`` with the new aggregate.
3. The taker's outcome: ``Filled``; ``PartiallyFilled`` then ``Level`` if it
   traded and now rests; ``Level`` alone if it rests untouched;
   ``Expired`` (IOC remainder or FOK) or ``Cancelled`` (self-trade).
4. Stop orders fired by the new last trade price, one at a time in
   acceptance order: ``Triggered`` then that order's steps 2 and 3; repeated
   while the last trade price keeps firing stops.

``Level`` carries the new total resting quantity at (side, price); 0 means the
level is gone.  Replaying ``Level`` events over an empty book reproduces the
depth exactly.  Order state events carry the order's cumulative ``filled``,
its ``remaining`` open quantity (for a terminal event: the quantity that will
never fill, to release holds; 0 for a market order sized by quote alone) and
``quote_left``, the unspent budget of a quote-sized market order (else 0).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any, NamedTuple


class EventKind(IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    TRADE = 3
    PARTIALLY_FILLED = 4
    FILLED = 5
    CANCELLED = 6
    EXPIRED = 7
    TRIGGERED = 8
    AMENDED = 9
    LEVEL = 10


ACCEPTED = 1
REJECTED = 2
TRADE = 3
PARTIALLY_FILLED = 4
FILLED = 5
CANCELLED = 6
EXPIRED = 7
TRIGGERED = 8
AMENDED = 9
LEVEL = 10


class Accepted(NamedTuple):
    kind: int
    order_id: int
    owner_id: int
    side: int


class Rejected(NamedTuple):
    kind: int
    order_id: int
    reason: int


class Trade(NamedTuple):
    """A fill; ``price`` is always the maker's price."""

    kind: int
    maker_order_id: int
    maker_owner_id: int
    taker_order_id: int
    taker_owner_id: int
    taker_side: int
    price: int
    qty: int


class PartiallyFilled(NamedTuple):
    kind: int
    order_id: int
    owner_id: int
    filled: int
    remaining: int
    quote_left: int
    reason: int


class Filled(NamedTuple):
    kind: int
    order_id: int
    owner_id: int
    filled: int
    remaining: int
    quote_left: int
    reason: int


class Cancelled(NamedTuple):
    kind: int
    order_id: int
    owner_id: int
    filled: int
    remaining: int
    quote_left: int
    reason: int


class Expired(NamedTuple):
    kind: int
    order_id: int
    owner_id: int
    filled: int
    remaining: int
    quote_left: int
    reason: int


class Triggered(NamedTuple):
    """A stop order fired at ``last_price``; its execution follows."""

    kind: int
    order_id: int
    owner_id: int
    side: int
    last_price: int


class Amended(NamedTuple):
    """``qty`` is the new total quantity, ``remaining`` the open part."""

    kind: int
    order_id: int
    owner_id: int
    side: int
    price: int
    qty: int
    remaining: int
    kept_priority: int


class Level(NamedTuple):
    """New aggregate resting quantity at one price level (0: level removed)."""

    kind: int
    side: int
    price: int
    qty: int


Event = Accepted | Rejected | Trade | PartiallyFilled | Filled | Cancelled | Expired | Triggered | Amended | Level

EVENT_TYPES: dict[int, type] = {
    ACCEPTED: Accepted,
    REJECTED: Rejected,
    TRADE: Trade,
    PARTIALLY_FILLED: PartiallyFilled,
    FILLED: Filled,
    CANCELLED: Cancelled,
    EXPIRED: Expired,
    TRIGGERED: Triggered,
    AMENDED: Amended,
    LEVEL: Level,
}


def event_to_dict(event: Any) -> dict[str, Any]:
    """Named form of an event, with ``type`` set to its class name."""
    d: dict[str, Any] = {"type": EVENT_TYPES[event[0]].__name__}
    d.update(zip(event._fields[1:], event[1:], strict=False))
    return d


def event_from_tuple(values: tuple[int, ...]) -> Any:
    """Inverse of ``tuple(event)``."""
    return EVENT_TYPES[values[0]]._make(values)


def events_to_bytes(events: list[Any]) -> bytes:
    """Canonical binary form of an event list (for logs and comparisons)."""
    parts = [struct.pack("<I", len(events))]
    for ev in events:
        parts.append(struct.pack(f"<B{len(ev) - 1}q", ev[0], *ev[1:]))
    return b"".join(parts)
