"""Order writes made by users: placement (with the ledger hold) and cancel requests.

Everything after placement is the matcher's (``orders.matcher``): it alone changes an
order's status, fills and hold. A cancel only marks ``cancel_requested``; the matcher
performs it in sequence and releases what is left of the hold. See docs/orders.md.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import user_check_not_frozen, users_lock_frozen
from kootabase.db import model_build, rows_delete, rows_insert
from kootabase.errors import Conflict, NotFound, ServiceError
from kootabase.events import broadcasts_after_commit, user_group
from kootabase.statements import Statement
from orders.catalog import market_by_symbol
from orders.models import LIVE_STATUSES, Market, Order, OrderStatus, OrderType, Side, TimeInForce, Trade
from orders.pricing import (
    buy_hold,
    fee_rates_for,
    market_spec,
    quote_budget_units,
    to_lots,
    to_ticks,
)
from wallets.locks import retry_on_deadlock
from wallets.models import AMOUNT_LIMIT, MONEY, AccountKind, Currency, EntryKind
from wallets.services import Leg, Posting, amount_validate, ledger_accounts_ensure, ledger_post_each

logger = logging.getLogger(__name__)


def market_group(symbol: str) -> str:
    return f"market.{symbol}"


class Placement(NamedTuple):
    order: Order
    created: bool


@dataclass(frozen=True, slots=True)
class _Checked:
    """A validated order: what to store and what to hold."""

    market: Market
    side: str
    type: str
    time_in_force: str
    post_only: bool
    price: Decimal | None
    stop_price: Decimal | None
    quantity: Decimal | None
    quote_amount: Decimal | None
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal
    hold_currency: Currency
    hold_amount: Decimal


def market_get_open(*, symbol: str) -> Market:
    """The market ``symbol`` if it accepts orders: ``unknown_market``, ``market_halted``,
    ``market_cancel_only`` or ``currency_disabled`` otherwise."""
    market = market_get(symbol=symbol)
    if market.status == Market.Status.HALTED:
        raise Conflict("market_halted", f"{market.symbol} is halted: no orders are accepted now.")
    if market.status == Market.Status.CANCEL_ONLY:
        raise Conflict("market_cancel_only", f"{market.symbol} accepts cancels only now.")
    for currency in (market.base, market.quote):
        if not currency.is_active or not currency.trading_enabled:
            raise Conflict("currency_disabled", f"Trading in {currency.code} is disabled now.")
    return market


def market_get(*, symbol: str) -> Market:
    """The market ``symbol`` (any case) from the process's catalog: ``unknown_market`` if none."""
    market = market_by_symbol(str(symbol).strip().upper())
    if market is None:
        raise ServiceError("unknown_market", f"Unknown market {symbol!r}.", details={"market": str(symbol)})
    return market


# Read by placement for every market and stop order (in the placement thread): compiled once.
_LAST_PRICE = Statement(
    lambda market_id: Trade.objects.filter(market_id=market_id).order_by("-trade_no").values_list("price")[:1],
    market_id=Trade._meta.get_field("market"),
)
_RESTING_STATUSES = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


def _best_resting(side: str, ordering: str) -> Statement:
    return Statement(
        lambda market_id: (
            Order.objects.filter(market_id=market_id, side=side, status__in=_RESTING_STATUSES)
            .order_by(ordering)
            .values_list("price")[:1]
        ),
        market_id=Order._meta.get_field("market"),
    )


_BEST_ASK, _BEST_BID = _best_resting(Side.SELL, "price"), _best_resting(Side.BUY, "-price")


def _last_price(market: Market) -> Decimal | None:
    rows = _LAST_PRICE.rows(market_id=market.pk)
    return rows[0][0] if rows else None


def _best_price_against(market: Market, side: str) -> Decimal | None:
    """The best price resting against an order of ``side`` (the lowest ask for a buy, the
    highest bid for a sell), from the stored book; None when that side is empty."""
    rows = (_BEST_ASK if side == Side.BUY else _BEST_BID).rows(market_id=market.pk)
    return rows[0][0] if rows else None


def market_reference_price(*, market: Market, side: str) -> Decimal | None:
    """What an order of ``side`` without a price of its own is valued at: the last trade
    price, or before the market's first trade the best price resting against it."""
    last = _last_price(market)
    return last if last is not None else _best_price_against(market, side)


def _require(value: Any, code: str, message: str) -> None:
    if value is None:
        raise ServiceError(code, message)


def _forbid(value: Any, code: str, message: str) -> None:
    if value is not None:
        raise ServiceError(code, message)


# Django builds an enum's ``values`` afresh on every access; these are read for every order.
_SIDES = frozenset(Side.values)
_TYPES = frozenset(OrderType.values)
_TIMES_IN_FORCE = frozenset(TimeInForce.values)


def _check(
    *,
    user: User,
    market: Market,
    side: str,
    type: str,
    time_in_force: str,
    post_only: bool,
    price: Decimal | None,
    stop_price: Decimal | None,
    quantity: Decimal | None,
    quote_amount: Decimal | None,
) -> _Checked:
    if side not in _SIDES:
        raise ServiceError("side_invalid", "The side is buy or sell.")
    if type not in _TYPES:
        raise ServiceError("type_invalid", f"The type is one of {', '.join(OrderType.values)}.")
    if time_in_force not in _TIMES_IN_FORCE:
        raise ServiceError("time_in_force_invalid", "The time in force is gtc, ioc or fok.")
    spec = market_spec(market)
    is_limit = type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    is_stop = type in (OrderType.STOP_LIMIT, OrderType.STOP_MARKET)
    if is_stop:
        _require(stop_price, "stop_price_required", "A stop order needs a stop price.")
    else:
        _forbid(stop_price, "stop_price_not_allowed", "Only stop orders take a stop price.")
    if is_limit:
        _require(price, "price_required", "A limit order needs a price.")
        _require(quantity, "quantity_required", "A limit order needs a quantity.")
        _forbid(quote_amount, "quote_amount_not_allowed", "A limit order is sized by quantity.")
        if post_only and is_stop:
            raise ServiceError("post_only_not_allowed", "Only limit orders can be post-only.")
        if post_only and time_in_force != TimeInForce.GTC:
            raise ServiceError("post_only_requires_gtc", "A post-only order is good till cancelled.")
    else:
        if post_only:
            raise ServiceError("post_only_not_allowed", "Only limit orders can be post-only.")
        if time_in_force == TimeInForce.FOK:
            raise ServiceError(
                "time_in_force_not_allowed", "A market order is immediate-or-cancel: fok is for limit orders."
            )
        time_in_force = TimeInForce.IOC  # a market order never rests
        if side == Side.SELL:
            _require(quantity, "quantity_required", "A market sell needs a quantity.")
            _forbid(quote_amount, "quote_amount_not_allowed", "A market sell is sized by quantity.")
        elif (quantity is None) == (quote_amount is None):
            raise ServiceError("quantity_or_quote_amount", "A market buy needs a quantity or a quote amount, not both.")
        elif quantity is not None and price is None:
            raise ServiceError(
                "protection_price_required",
                "A market buy by quantity needs a protection price (price): the most it may pay per unit.",
            )
    if is_stop:
        to_ticks(spec, stop_price, "stop_price")
    if price is not None:
        to_ticks(spec, price)
    if quantity is not None:
        to_lots(spec, quantity)
    if quote_amount is not None:
        try:
            amount_validate(amount=quote_amount, currency=market.quote)
        except ServiceError as exc:
            raise ServiceError(f"quote_{exc.code}", exc.message, details=exc.details) from None

    last_price = _last_price(market) if (is_stop or price is None) else None
    if is_stop and last_price is not None:
        wrong = stop_price <= last_price if side == Side.BUY else stop_price >= last_price
        if wrong:
            above_below = "above" if side == Side.BUY else "below"
            raise ServiceError(
                "stop_price_wrong_side",
                f"A {side} stop must be {above_below} the last price {last_price}.",
                details={"last_price": str(last_price)},
            )
    reference_price = price if price is not None else (stop_price if is_stop else last_price)
    if reference_price is None and not is_stop:  # a market order before the first trade
        reference_price = _best_price_against(market, side)
    notional = quote_amount if quote_amount is not None else None
    if notional is None and reference_price is not None:
        with localcontext(MONEY):
            notional = reference_price * quantity
    if notional is not None and notional < market.min_notional:
        raise ServiceError(
            "below_min_notional",
            f"The order's value must be at least {market.min_notional.normalize():f} {market.quote.code}.",
            details={"min_notional": str(market.min_notional)},
        )

    rates = fee_rates_for(user=user, market=market)
    if side == Side.SELL:
        hold_currency, hold_amount = market.base, quantity
    elif quote_amount is not None:
        if quote_budget_units(spec=spec, amount=quote_amount, taker_rate=rates.taker) < 1:
            raise ServiceError("below_min_notional", "The quote amount is too small to buy anything.")
        hold_currency, hold_amount = market.quote, quote_amount
    else:
        hold_currency = market.quote
        hold_amount = buy_hold(price=price, quantity=quantity, rate=rates.highest, precision=market.quote.precision)
    if hold_amount >= AMOUNT_LIMIT or (notional is not None and notional >= AMOUNT_LIMIT):
        raise ServiceError(
            "amount_out_of_range",
            "The order's value is beyond what a balance can hold.",
            details={"limit": f"{AMOUNT_LIMIT:f}"},
        )
    return _Checked(
        market=market,
        side=side,
        type=type,
        time_in_force=time_in_force,
        post_only=post_only,
        price=price,
        stop_price=stop_price,
        quantity=quantity,
        quote_amount=quote_amount,
        maker_fee_rate=rates.maker,
        taker_fee_rate=rates.taker,
        hold_currency=hold_currency,
        hold_amount=hold_amount,
    )


def _same_request(order: Order, market: Market, fields: dict[str, Any]) -> bool:
    """Whether the request, as sent, asks for the stored order: every field the user
    chose. A market order's time in force is not one (it is always ``ioc``)."""
    if order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and order.time_in_force != fields["time_in_force"]:
        return False
    stored = (order.market_id, order.side, order.type, bool(order.post_only))
    asked = (market.pk, fields["side"], fields["type"], bool(fields["post_only"]))
    return stored == asked and all(
        getattr(order, name) == fields[name] for name in ("price", "stop_price", "quantity", "quote_amount")
    )


def _replay(order: Order, market: Market, fields: dict[str, Any]) -> Placement:
    if not _same_request(order, market, fields):
        raise Conflict(
            "client_order_id_conflict",
            "This client_order_id was already used for a different order.",
            details={"client_order_id": order.client_order_id, "order_id": order.pk},
        )
    return Placement(order, False)


def order_event(order: Order) -> dict[str, Any]:
    """The private-feed message for an order's new state."""
    return {
        "type": "order.update",
        "order": {
            "id": order.pk,
            "client_order_id": order.client_order_id,
            "market": order.market.symbol,
            "side": order.side,
            "type": order.type,
            "status": order.status,
            "filled_quantity": str(order.filled_quantity),
            "filled_quote": str(order.filled_quote),
            "fee_paid": str(order.fee_paid),
            "reject_reason": order.reject_reason,
        },
    }


#: What a placement request may leave out.
_REQUEST_DEFAULTS: dict[str, Any] = {
    "quantity": None,
    "quote_amount": None,
    "price": None,
    "stop_price": None,
    "time_in_force": TimeInForce.GTC,
    "post_only": False,
    "client_order_id": "",
}


class PlaceRequest(NamedTuple):
    """One order to place: ``order_place_or_get``'s arguments. ``fresh_id``: the
    ``client_order_id`` was made for this request a moment ago and no order can have it
    yet, so a refusal is not looked up as a repeat."""

    user: User
    market_symbol: str
    fields: dict[str, Any]  # side, type, time_in_force, post_only, price, stop_price, quantity, quote_amount
    client_order_id: str
    fresh_id: bool = False


def place_request(*, user: User, market_symbol: str, **kwargs: Any) -> PlaceRequest:
    """A ``PlaceRequest`` from ``order_place_or_get``'s keyword arguments."""
    fields = {**_REQUEST_DEFAULTS, **kwargs}
    client_order_id = fields.pop("client_order_id") or ""
    return PlaceRequest(user, market_symbol, fields, client_order_id)


def order_place_or_get(*, user: User, market_symbol: str, **kwargs: Any) -> Placement:
    """Validate, hold the funds and store the order ``pending`` for its market's matcher.

    Keyword arguments: ``side``, ``type``, ``quantity``, ``quote_amount``, ``price``,
    ``stop_price``, ``time_in_force`` (gtc), ``post_only``, ``client_order_id``.
    Returns the order and whether it is new: a ``client_order_id`` the user already used
    returns that order (``client_order_id_conflict`` if it was a different order).
    Rejections raise, and leave nothing behind. A batch of one of ``orders_place_many``.
    """
    outcome = orders_place_many(requests=[place_request(user=user, market_symbol=market_symbol, **kwargs)])[0]
    if isinstance(outcome, ServiceError):
        raise outcome
    return outcome


def order_place(**kwargs: Any) -> Order:
    """Place an order (see ``order_place_or_get``); returns the order."""
    return order_place_or_get(**kwargs).order


def orders_place_many(*, requests: Sequence[PlaceRequest]) -> list[Placement | ServiceError]:
    """Place many orders, of one user or of many, in one transaction: each is accepted or
    refused on its own, exactly as if they had been placed one after the other in this
    order (a user's funds are counted order by order), and a refused one leaves nothing
    behind. Returns a ``Placement`` or the refusal for each, in the order given.

    A new order costs no lookup of its ``client_order_id``: the orders are inserted as
    new, and only when that fails — the unique ``(user, client_order_id)`` refuses the
    insert, or a check refuses the order — is an earlier order with that id looked for. A
    repeat then answers exactly as if it had been looked up first: with the stored order,
    even when a new order would now be refused (a frozen account, a halted market, funds
    spent), unless the market is unknown or the request differs from the stored order.
    A ``client_order_id`` that comes again in ``requests`` splits them there: the requests
    before are placed first (in their own transaction), then the rest, so the repeat is
    answered from what its first request left, in the order given. The first part is then
    committed whatever becomes of the rest: if the rest fails on the database (a lost
    connection, a lock wait timeout), each of its requests is ``placement_failed`` (503),
    placed nowhere and safe to send again, rather than the whole call raising as if
    nothing had been placed.
    """
    seen: set[tuple[int, str]] = set()
    for index, request in enumerate(requests):
        key = (request.user.pk, request.client_order_id)
        if request.client_order_id and key in seen:
            placed = orders_place_many(requests=requests[:index])
            return [*placed, *_place_rest(requests[index:])]
        seen.add(key)
    stored: dict[tuple[int, str], Order] = {}
    while True:
        try:
            outcomes = _place_all(requests, stored)
            break
        except IntegrityError:
            # Another request stored one of these client_order_ids since they were checked:
            # answer those as repeats, and place the rest again.
            found = _stored_orders(requests)
            if found.keys() <= stored.keys():
                raise
            stored = found
    refused = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, ServiceError)]
    repeats = [requests[i] for i in refused if requests[i].client_order_id and not requests[i].fresh_id]
    if repeats:
        found = _stored_orders(repeats)
        for index in refused:
            request = requests[index]
            existing = found.get((request.user.pk, request.client_order_id))
            if existing is not None:
                outcomes[index] = _repeat(request, existing)
    return outcomes


def _place_rest(requests: Sequence[PlaceRequest]) -> list[Placement | ServiceError]:
    """``orders_place_many`` of the requests after a split, whose first part is committed
    (outside a caller's transaction: inside one, nothing is committed yet, and the
    caller's block decides)."""
    try:
        return orders_place_many(requests=requests)
    except DatabaseError:
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            raise
        logger.exception("placing the %d orders after a repeated client_order_id failed", len(requests))
        failed = ServiceError(
            "placement_failed",
            "Not placed: the database failed after the orders before it were placed. Send it again; its "
            "client_order_id keeps it from being placed twice.",
            status=503,
        )
        return [failed] * len(requests)


def _stored_orders(requests: Sequence[PlaceRequest]) -> dict[tuple[int, str], Order]:
    """The stored orders of the requests' (user, client_order_id) pairs, by pair."""
    wanted = {(r.user.pk, r.client_order_id) for r in requests if r.client_order_id}
    if not wanted:
        return {}
    candidates = Order.objects.select_related("market").filter(
        user_id__in={user_id for user_id, _ in wanted}, client_order_id__in={cid for _, cid in wanted}
    )
    return {(o.user_id, o.client_order_id): o for o in candidates if (o.user_id, o.client_order_id) in wanted}


def _repeat(request: PlaceRequest, existing: Order) -> Placement | ServiceError:
    """A request with a used client_order_id: the stored order if it asks for the same
    order (even when a new one would now be refused: the price moved, funds are spent),
    ``client_order_id_conflict`` if it differs."""
    try:
        return _replay(existing, market_get(symbol=request.market_symbol), request.fields)
    except ServiceError as exc:
        return exc


@retry_on_deadlock
def _place_all(
    requests: Sequence[PlaceRequest], stored: dict[tuple[int, str], Order]
) -> list[Placement | ServiceError]:
    """Check the orders, store them and hold their funds, in one transaction. ``stored``:
    orders found for their client_order_ids, answered as repeats."""
    outcomes: list[Placement | ServiceError | None] = [None] * len(requests)
    new: list[tuple[int, Order]] = []
    markets: dict[str, Market] = {}  # each market looked up (and copied) once for the call's orders
    for index, request in enumerate(requests):
        existing = stored.get((request.user.pk, request.client_order_id)) if request.client_order_id else None
        if existing is not None:
            outcomes[index] = _repeat(request, existing)
            continue
        try:
            new.append((index, _new_order(request, markets)))
        except ServiceError as exc:
            outcomes[index] = exc
    if not new:
        return outcomes  # type: ignore[return-value]
    with transaction.atomic():
        # A freeze that committed since the requests' users were read refuses their orders;
        # one that comes later waits for this transaction, and then cancels these orders.
        frozen = users_lock_frozen(user_ids={order.user_id for _, order in new})
        if frozen:
            new = _refuse_frozen(requests, new, frozen, outcomes)
            if not new:
                return outcomes  # type: ignore[return-value]
        orders = [order for _, order in new]
        # The orders go in first: a repeated client_order_id fails here, before any hold.
        rows_insert(Order, orders)
        holds = ledger_post_each(postings=_holds(orders))
        refused: list[int] = []
        events: list[tuple[str, dict[str, Any]]] = []
        for (index, order), hold in zip(new, holds, strict=True):
            if isinstance(hold, ServiceError):
                outcomes[index] = hold
                refused.append(order.pk)
            else:
                outcomes[index] = Placement(order, True)
                events.append((user_group(order.user_id), order_event(order)))
        broadcasts_after_commit(events)  # after the balances the holds announced
        if refused:
            # Written a moment ago in this transaction, never seen outside it: a refused
            # order leaves no row (and its client_order_id stays free).
            rows_delete(Order, refused)
    return outcomes  # type: ignore[return-value]


def _refuse_frozen(
    requests: Sequence[PlaceRequest],
    new: list[tuple[int, Order]],
    frozen: set[int],
    outcomes: list[Placement | ServiceError | None],
) -> list[tuple[int, Order]]:
    """The new orders whose users are not in ``frozen``; the others are refused
    ``account_frozen`` in ``outcomes``."""
    kept = []
    for index, order in new:
        if order.user_id not in frozen:
            kept.append((index, order))
            continue
        user = requests[index].user
        user.refresh_from_db(fields=["frozen_at", "frozen_reason"])
        try:
            user_check_not_frozen(user=user)
        except ServiceError as exc:
            outcomes[index] = exc
    return kept


def _new_order(request: PlaceRequest, markets: dict[str, Market]) -> Order:
    """The checked order, unsaved: ``ServiceError`` if it is refused. ``markets``: the open
    markets the caller's earlier orders were checked against, by symbol as sent."""
    user = request.user
    user_check_not_frozen(user=user)
    market = markets.get(request.market_symbol)
    if market is None:
        market = markets[request.market_symbol] = market_get_open(symbol=request.market_symbol)
    checked = _check(user=user, market=market, **request.fields)
    return model_build(  # Order(...) without the constructor's per-field work: a batch builds many
        Order,
        {
            "user": user,
            "client_order_id": request.client_order_id or uuid.uuid4().hex,
            "market": market,
            "side": checked.side,
            "type": checked.type,
            "time_in_force": checked.time_in_force,
            "post_only": checked.post_only,
            "price": checked.price,
            "stop_price": checked.stop_price,
            "quantity": checked.quantity,
            "quote_amount": checked.quote_amount,
            "maker_fee_rate": checked.maker_fee_rate,
            "taker_fee_rate": checked.taker_fee_rate,
            "hold_currency": checked.hold_currency,
            "hold_amount": checked.hold_amount,
            "hold_left": checked.hold_amount,
            "status": OrderStatus.PENDING,
        },
    )


def _holds(orders: Sequence[Order]) -> list[Posting]:
    """Each order's hold: its amount from the user's available balance to their locked one."""
    kinds = (AccountKind.AVAILABLE, AccountKind.LOCKED)
    keys = {(o.user_id, o.hold_currency_id, kind) for o in orders for kind in kinds}
    currencies = {o.hold_currency_id: o.hold_currency for o in orders}
    accounts = ledger_accounts_ensure(keys=keys, currencies=currencies.values())
    postings = []
    for order in orders:
        available = accounts[(order.user_id, order.hold_currency_id, AccountKind.AVAILABLE)]
        locked = accounts[(order.user_id, order.hold_currency_id, AccountKind.LOCKED)]
        amount = order.hold_amount
        postings.append(
            Posting(
                kind=EntryKind.HOLD,
                legs=[Leg(available, amount.copy_negate()), Leg(locked, amount)],
                reference=f"order:{order.pk}",
            )
        )
    return postings


# --- Cancel requests ------------------------------------------------------------------


def order_get_own(*, user: User, order_id: int) -> Order:
    """The user's order; ``order_not_found`` (404) for a missing order and for anyone
    else's alike, so the answer never reveals that an id exists."""
    order = Order.objects.select_related("market").filter(pk=order_id, user=user).first()
    if order is None:
        raise NotFound("order_not_found", "No such order.")
    return order


@retry_on_deadlock
def order_cancel(*, user: User, order_id: int) -> Order:
    """Ask the matcher to cancel the order. ``order_not_found`` (404) when it is not the
    user's; ``order_not_cancellable`` (409) when it is filled, cancelled, rejected or expired."""
    order = order_get_own(user=user, order_id=order_id)
    updated = Order.objects.filter(pk=order.pk, status__in=LIVE_STATUSES).update(
        cancel_requested=True, updated_at=timezone.now()
    )
    order.refresh_from_db()
    if not updated:
        raise Conflict(
            "order_not_cancellable",
            f"The order is {order.status}: it cannot be cancelled.",
            details={"status": order.status},
        )
    return order


def orders_cancel_all(*, user: User, market_symbol: str | None = None, cancel_reason: str = "") -> list[int]:
    """Ask the matcher to cancel every live order of the user (in one market, or all);
    returns their ids. ``cancel_reason``: set when staff ask (e.g. ``account_frozen``); it
    becomes the orders' ``reject_reason``."""
    live = Order.objects.filter(user=user, status__in=LIVE_STATUSES, cancel_requested=False)
    if market_symbol:
        live = live.filter(market=market_get(symbol=market_symbol))
    with transaction.atomic():
        ids = list(live.order_by("pk").values_list("pk", flat=True))
        Order.objects.filter(pk__in=ids, status__in=LIVE_STATUSES).update(
            cancel_requested=True, cancel_reason=cancel_reason, updated_at=timezone.now()
        )
    return ids
