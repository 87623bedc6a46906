"""Commands accepted by :meth:`OrderBook.apply`.

Every command is an immutable ``NamedTuple`` whose first field is ``seq``.
The book refuses (``Reason.SEQ_NOT_INCREASING``) a ``seq`` that is not
strictly greater than the last one it applied, so a replay after recovery can
start anywhere before the snapshot point without applying anything twice.

All numeric fields are ints: prices in ticks, quantities in lots and quote
budgets in quote units of ``tick_size * lot_size`` (see :mod:`.codec`).
A price field of ``0`` means "none" where a price is optional.

Field checks happen in this order, and the first failure is reported:
seq, side, (trigger), price(s), quantity/budget, time in force, post-only,
STP mode, duplicate order id, then the book-dependent checks (post-only would
take, stop would trigger immediately).  Values that are not ints or do not fit
``0..MAX_INT`` are programming errors: ``TypeError``/``ValueError`` is raised
and the book is left untouched (the seq is not consumed).
"""

from __future__ import annotations

from typing import NamedTuple

from .constants import GTC, STP_DEFAULT


class PlaceLimit(NamedTuple):
    """A limit order.

    ``tif`` is GTC, IOC or FOK.  ``post_only`` requires GTC and is rejected
    (``POST_ONLY_WOULD_TAKE``) if any part of it would trade on arrival; it is
    never re-priced.
    """

    seq: int
    order_id: int
    owner_id: int
    side: int
    price: int
    qty: int
    tif: int = GTC
    post_only: bool = False
    stp: int = STP_DEFAULT


class PlaceMarket(NamedTuple):
    """A market order, immediate-or-cancel by nature.

    Sized by ``qty`` (lots), by ``quote`` (budget in quote units), or both;
    ``0`` means "no limit" for one of them but not both.  A quote budget buys
    (or sells) whole lots only while the remaining budget covers one more lot
    at the maker's price; the unspent budget is reported as ``quote_left`` on
    the order's final event.  ``protection_price`` (0 = none) bounds the sweep:
    a buy never trades above it and a sell never below it.
    """

    seq: int
    order_id: int
    owner_id: int
    side: int
    qty: int = 0
    quote: int = 0
    protection_price: int = 0
    stp: int = STP_DEFAULT


class PlaceStop(NamedTuple):
    """A stop order held by the book until the last trade price reaches it.

    ``trigger`` is ``Trigger.ABOVE`` (fires when last price >= stop_price) or
    ``Trigger.BELOW`` (last price <= stop_price); a buy stop-loss and a sell
    take-profit use ABOVE, a sell stop-loss and a buy take-profit use BELOW.
    With ``limit_price > 0`` it becomes a limit order (``qty`` lots, ``tif``)
    when triggered: a stop-limit.  With ``limit_price == 0`` it becomes a market
    order (``qty`` and/or ``quote``, optional ``protection_price``): a
    stop-market.  A stop whose condition already holds when it arrives is
    rejected (``STOP_WOULD_TRIGGER``); before the first trade none can fire.
    """

    seq: int
    order_id: int
    owner_id: int
    side: int
    trigger: int
    stop_price: int
    qty: int = 0
    quote: int = 0
    limit_price: int = 0
    tif: int = GTC
    protection_price: int = 0
    stp: int = STP_DEFAULT


class Cancel(NamedTuple):
    """Cancel a resting order or a held stop order."""

    seq: int
    order_id: int


class Amend(NamedTuple):
    """Change the price and/or total quantity of a resting limit order.

    ``qty`` is the new *total* quantity, filled part included, and must be
    greater than what has already filled.  Keeping the price and not raising
    the quantity keeps time priority; a new price or a larger quantity sends
    the order to the back of its (new) level, and a new price that crosses
    the book trades like an incoming order (a post-only order is instead
    rejected with ``POST_ONLY_WOULD_TAKE`` and left unchanged).  Stop orders
    are not amendable (``NOT_AMENDABLE``): cancel and place again.
    """

    seq: int
    order_id: int
    price: int
    qty: int


Command = PlaceLimit | PlaceMarket | PlaceStop | Cancel | Amend
