"""Enumerations and limits shared by commands, events and the book.

Every value that crosses the engine boundary is a plain ``int``.  The
``IntEnum`` classes below name those ints for readers and callers; the engine
itself stores and emits the bare integers (an ``IntEnum`` member compares equal
to its value, so callers may pass either).
"""

from __future__ import annotations

from enum import IntEnum

#: Largest value any integer field may hold (ids, seq, prices, quantities,
#: quote budgets).  Values outside ``0..MAX_INT`` raise ``ValueError`` before
#: the command is applied, so the compiled core can store them as int64.
MAX_INT = (1 << 63) - 1


class Side(IntEnum):
    BUY = 1
    SELL = 2


class TimeInForce(IntEnum):
    GTC = 1  #: good till cancelled: the remainder rests in the book
    IOC = 2  #: immediate or cancel: the remainder expires
    FOK = 3  #: fill or kill: fills completely at once or expires untouched


class Stp(IntEnum):
    """Self-trade prevention mode, chosen by the incoming (taker) order."""

    CANCEL_MAKER = 1  #: default: cancel the resting order, keep matching
    CANCEL_TAKER = 2  #: stop matching and cancel the incoming remainder
    CANCEL_BOTH = 3  #: cancel the resting order and the incoming remainder


class Trigger(IntEnum):
    """When a stop order fires, judged against the last trade price."""

    ABOVE = 1  #: last trade price >= stop price (buy stop-loss, sell take-profit)
    BELOW = 2  #: last trade price <= stop price (sell stop-loss, buy take-profit)


class Reason(IntEnum):
    """Reason codes on ``Rejected`` and on terminal order events."""

    NONE = 0
    # -- rejections (the command changed nothing but the book's last seq) --
    SEQ_NOT_INCREASING = 1  #: the book's last seq is not changed either
    INVALID_SIDE = 2
    INVALID_PRICE = 3
    INVALID_QTY = 4
    INVALID_TIF = 5
    INVALID_STP = 6
    INVALID_TRIGGER = 7
    DUPLICATE_ORDER_ID = 8
    UNKNOWN_ORDER = 9
    NOT_AMENDABLE = 10
    POST_ONLY_WOULD_TAKE = 11
    STOP_WOULD_TRIGGER = 12
    # -- why an accepted order ended without filling completely --
    USER_CANCEL = 20
    SELF_TRADE = 21
    IOC_REMAINDER = 22
    FOK_UNFILLABLE = 23


BUY = 1
SELL = 2
GTC = 1
IOC = 2
FOK = 3
STP_CANCEL_MAKER = 1
STP_CANCEL_TAKER = 2
STP_CANCEL_BOTH = 3
STP_DEFAULT = STP_CANCEL_MAKER
TRIGGER_ABOVE = 1
TRIGGER_BELOW = 2
