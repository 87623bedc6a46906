"""Swaps: convert one currency into another at the live book, all or nothing.

**Quote** (``swap_quote_create``). The route is a market between the two currencies
(either direction) or, when there is none, two markets through a common currency
(BTC -> ETH: sell BTC-USDT, then buy ETH-USDT); of several, the one that gives most.
Each leg is priced on the resting orders of its market as stored (open and partially
filled, aggregated by price level, best first; the user's own orders left out, since
self-trade prevention would cancel them rather than fill), with the user's taker fee:

- a sell leg sells ``floor(amount / lot)`` lots and gives ``notional - fee``;
- a buy leg spends ``amount`` as a market buy by quote amount (the engine budget is
  ``floor(amount / (1 + taker rate))``) and gives the base it buys.

The first leg is sized on its lot (``from_amount`` is what is actually spent), the next
leg spends what the first one gives. A quote lives ``SWAP_QUOTE_TTL_SECONDS`` (10).

A swap never touches the user's other orders: a route whose leg would reach one of them
(a resting order of the user at or better than the last price level the leg takes from)
is refused with ``swap_own_orders`` (409) when quoted, when executed and in the matcher.

**Execution request** (``swap_execute``). Checks the quote (the owner's, open, not
expired), turns the slippage bound into ``min_to_amount``, prices the route again and
refuses at once what the stored book cannot give; then, in one transaction, marks the
quote executed, stores a ``SwapExecution`` ``pending`` and holds ``from_amount``.

**Execution** (``swaps_execute``, called by ``orders.matcher.matchers_run`` after each
round). A single writer owns each book, so the legs are executed where the books live:
by the matcher process that owns every market of the route. It reads the pending swaps
of each of its markets (``SwapExecution.market``, the route's first market) on their own,
so swaps waiting for another process never hold back its own. In one step it

1. checks that the user is not frozen (``account_frozen``), and on the in-memory books,
   without changing them (``depth``), that every leg fills completely without reaching
   the user's own orders and the result reaches ``min_to_amount``;
2. then, in ONE transaction: creates each leg as a market IOC order, applies it to its
   book and writes its outcome (``MarketMatcher.apply_in_transaction``: trades, order
   rows, ledger postings, the fenced ``MatcherState``), holds the first leg's proceeds for
   the next leg, checks the real outcome against the bound again, and marks the swap
   completed.

Anything that fails in step 2 rolls everything back and rebuilds the books from the
database; either way a swap that cannot complete is ``failed`` with a reason code and
its hold released: nothing trades. The markets of a route must share a matcher process
(``run_matcher --market A --market B``; the embedded run has one for all markets): a
swap whose markets are split is failed by the owner of its first market with
``swap_route_unavailable``. See docs/orders.md.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import user_check_not_frozen
from kootabase.errors import Conflict, NotFound, ServiceError
from kootabase.statements import Statement
from matching.engine import BUY, SELL, MarketSpec
from orders.models import (
    Market,
    MatcherState,
    Order,
    OrderStatus,
    OrderType,
    Side,
    SwapExecution,
    SwapQuote,
    TimeInForce,
)
from orders.pricing import fee_rates_for, floor_to, market_spec, quote_budget_units, to_lots, to_ticks
from orders.services import market_get_open
from wallets.models import MONEY, Currency
from wallets.services import amount_validate, currency_get_enabled, funds_hold, funds_release

if TYPE_CHECKING:
    from orders.matcher import MarketMatcher

logger = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 10
EXECUTE_BATCH = 100
_RESTING = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
# The ids of one market's pending swaps, oldest first, read from their index alone (see
# kootabase.db.sql_using_index) by a statement compiled once: every matcher round polls it
# for each market the process runs.
_PENDING_SWAPS = Statement(
    lambda market_id: (
        SwapExecution.objects.filter(status=SwapExecution.Status.PENDING, market_id=market_id)
        .order_by("pk")
        .values_list("pk")
    )[:EXECUTE_BATCH],
    index="orders_swap_status_market_id",
    market_id=SwapExecution._meta.get_field("market"),
)


def quote_ttl() -> timedelta:
    return timedelta(seconds=getattr(settings, "SWAP_QUOTE_TTL_SECONDS", DEFAULT_TTL_SECONDS))


# --- Pricing: a walk over price levels, in engine integers ------------------------------

Levels = Iterable[tuple[int, int]]  # (price in ticks, quantity in lots), best first


@dataclass(frozen=True, slots=True)
class _Walk:
    lots: int
    units: int  # notional in quote units
    complete: bool
    last_price: int  # the last level it takes from, in ticks; 0 when it takes nothing


def _walk(levels: Levels, *, lots: int = 0, budget: int = 0) -> _Walk:
    """What a market IOC order of ``lots`` (a sell or buy by quantity) or of ``budget``
    quote units (a buy by amount) takes from ``levels``, exactly as the engine matches it:
    complete when the quantity is filled or the budget no longer covers a lot at the next
    maker's price; incomplete when the book runs out first."""
    taken = units = last = 0
    for price, available in levels:
        if available <= 0:
            continue
        if budget:
            affordable = (budget - units) // price
            if affordable == 0:
                return _Walk(taken, units, taken > 0, last)
            take = min(available, affordable)
        else:
            take = min(available, lots - taken)
        taken += take
        units += take * price
        last = price
        if budget and (take < available or units == budget):
            return _Walk(taken, units, True, last)
        if not budget and taken == lots:
            return _Walk(taken, units, True, last)
    return _Walk(taken, units, False, last)


@dataclass(frozen=True, slots=True)
class Leg:
    market: Market
    side: str  # the side the swap takes: sell (from = base) or buy (from = quote)

    @property
    def spec(self) -> MarketSpec:
        return market_spec(self.market)

    def as_json(self) -> dict[str, str]:
        return {"market": self.market.symbol, "side": self.side}


@dataclass(frozen=True, slots=True)
class LegFill:
    """A leg's expected outcome: its order's size, what it spends and what it gives."""

    leg: Leg
    quantity: Decimal | None  # sell legs
    quote_amount: Decimal | None  # buy legs
    spent: Decimal
    notional: Decimal
    received: Decimal
    complete: bool
    last_price: int  # ticks of the last price level the leg takes from


def _leg_size(leg: Leg, amount: Decimal, taker_rate: Decimal) -> tuple[int, int]:
    """(lots, budget units) of the leg's order for ``amount`` of its input; both 0 when
    ``amount`` buys or sells nothing."""
    if leg.side == Side.SELL:
        return int(Fraction(amount) / Fraction(leg.market.lot_size)), 0
    return 0, quote_budget_units(spec=leg.spec, amount=amount, taker_rate=taker_rate)


def _leg_fill(leg: Leg, amount: Decimal, taker_rate: Decimal, levels: Levels) -> LegFill:
    lots, budget = _leg_size(leg, amount, taker_rate)
    if not lots and not budget:
        raise ServiceError(
            "swap_amount_too_small",
            f"The amount is too small for {leg.market.symbol}'s lot and fees.",
            details={"market": leg.market.symbol, "lot_size": str(leg.market.lot_size)},
        )
    spec = leg.spec
    walk = _walk(levels, lots=lots, budget=budget)
    notional = spec.units_to_quote(walk.units)
    fee = floor_to(Fraction(notional) * Fraction(taker_rate), leg.market.quote.precision)
    with localcontext(MONEY):
        if leg.side == Side.SELL:
            quantity = spec.lots_to_qty(lots)
            return LegFill(leg, quantity, None, quantity, notional, notional - fee, walk.complete, walk.last_price)
        return LegFill(
            leg, None, amount, notional + fee, notional, spec.lots_to_qty(walk.lots), walk.complete, walk.last_price
        )


def _route_fill(legs: Sequence[Leg], amount: Decimal, rates: Sequence[Decimal], levels_of: Any) -> list[LegFill]:
    """Every leg's fill, the next leg spending what the previous one gave."""
    fills = []
    for leg, rate in zip(legs, rates, strict=True):
        fill = _leg_fill(leg, amount, rate, levels_of(leg))
        fills.append(fill)
        if not fill.complete:
            break
        amount = fill.received
        if amount <= 0:
            break
    return fills


def _check_fills(legs: Sequence[Leg], fills: Sequence[LegFill]) -> Decimal:
    """The route's result; ``swap_insufficient_liquidity`` unless every leg fills
    completely, ``swap_amount_too_small`` below a market's minimum order value."""
    if len(fills) < len(legs) or not all(f.complete for f in fills) or fills[-1].received <= 0:
        symbol = fills[-1].leg.market.symbol
        raise Conflict(
            "swap_insufficient_liquidity",
            f"{symbol} cannot fill this swap completely now.",
            details={"market": symbol},
        )
    for fill in fills:
        if fill.notional < fill.leg.market.min_notional:
            market = fill.leg.market
            raise ServiceError(
                "swap_amount_too_small",
                f"The {market.symbol} leg is worth less than its minimum order value "
                f"{market.min_notional.normalize():f} {market.quote.code}.",
                details={"market": market.symbol, "min_notional": str(market.min_notional)},
            )
    return fills[-1].received


def _check_own_orders(fills: Sequence[LegFill], own_of: Callable[[Leg], Mapping[int, int]]) -> None:
    """``swap_own_orders`` (409) when a leg would reach the user's own resting orders
    (``own_of``: their levels on the side the leg takes): one at or better than the last
    price level the leg takes from. Self-trade prevention would cancel them, and a swap
    never touches the user's other orders."""
    for fill in fills:
        leg = fill.leg
        buying = leg.side == Side.BUY  # takes asks: those at or below the last price are met
        in_the_way = [p for p in own_of(leg) if (p <= fill.last_price if buying else p >= fill.last_price)]
        if in_the_way:
            symbol = leg.market.symbol
            own_side = Side.SELL if buying else Side.BUY
            price = leg.spec.ticks_to_price(fill.last_price).normalize()
            raise Conflict(
                "swap_own_orders",
                f"This swap would reach your own {own_side} orders on {symbol} (at {price:f} or "
                f"{'lower' if buying else 'higher'}); a swap never trades with or cancels your orders: "
                "cancel them first.",
                details={"market": symbol, "side": own_side},
            )


def _stored_levels(leg: Leg, user: User) -> list[tuple[int, int]]:
    """The resting orders the leg would take, from the database, by price level, best
    first (the user's own orders left out)."""
    resting_side = Side.BUY if leg.side == Side.SELL else Side.SELL
    spec = leg.spec
    levels: dict[int, int] = defaultdict(int)
    rows = (
        Order.objects.filter(market=leg.market, side=resting_side, status__in=_RESTING)
        .exclude(user=user)
        .values_list("price", "quantity", "filled_quantity")
    )
    for price, quantity, filled in rows:
        with localcontext(MONEY):
            levels[to_ticks(spec, price)] += to_lots(spec, quantity) - spec.qty_to_lots(filled)
    return sorted(levels.items(), reverse=resting_side == Side.BUY)


# --- Routes ---------------------------------------------------------------------------


def _active_markets() -> list[Market]:
    return [
        m
        for m in Market.objects.filter(status=Market.Status.ACTIVE).select_related("base", "quote")
        if all(c.is_active and c.trading_enabled for c in (m.base, m.quote))
    ]


def _leg(market: Market, spend: Currency) -> Leg:
    return Leg(market, Side.SELL if market.base_id == spend.pk else Side.BUY)


def swap_routes(*, from_currency: Currency, to_currency: Currency) -> list[list[Leg]]:
    """The direct market between the two currencies, if any; otherwise every two-market
    route through a common currency."""
    markets = _active_markets()
    pair = {from_currency.pk, to_currency.pk}
    direct = [m for m in markets if {m.base_id, m.quote_id} == pair]
    if direct:
        return [[_leg(m, from_currency)] for m in direct]
    by_currency: dict[int, list[Market]] = defaultdict(list)
    for m in markets:
        by_currency[m.base_id].append(m)
        by_currency[m.quote_id].append(m)
    routes = []
    for first in by_currency[from_currency.pk]:
        middle_id = first.quote_id if first.base_id == from_currency.pk else first.base_id
        for second in by_currency[to_currency.pk]:
            if middle_id in (second.base_id, second.quote_id) and second.pk != first.pk:
                middle = first.quote if first.quote_id == middle_id else first.base
                routes.append([_leg(first, from_currency), _leg(second, middle)])
    return routes


def _price(user: User, routes: list[list[Leg]], amount: Decimal) -> tuple[list[Leg], list[LegFill], Decimal]:
    """The route that gives most for ``amount`` on the stored book."""
    best: tuple[list[Leg], list[LegFill], Decimal] | None = None
    error: ServiceError | None = None
    for legs in routes:
        rates = [fee_rates_for(user=user, market=leg.market).taker for leg in legs]
        try:
            fills = _route_fill(legs, amount, rates, lambda leg: _stored_levels(leg, user))
            received = _check_fills(legs, fills)
            _check_own_orders(fills, lambda leg: _own_levels(leg, user.pk))
        except ServiceError as exc:
            error = error if error is not None and error.code == "swap_amount_too_small" else exc
            continue
        if best is None or received > best[2]:
            best = (legs, fills, received)
    if best is None:
        assert error is not None
        raise error
    return best


# --- Quotes ---------------------------------------------------------------------------


def swap_quote_create(*, user: User, from_code: str, to_code: str, amount: Decimal) -> SwapQuote:
    """Price converting ``amount`` of ``from_code`` into ``to_code`` now.

    Errors: ``unknown_currency``, ``currency_disabled``, ``swap_same_currency``,
    ``amount_*``, ``swap_no_route``, ``swap_amount_too_small``,
    ``swap_insufficient_liquidity`` (409), ``swap_own_orders`` (409)."""
    source = currency_get_enabled(code=from_code, purpose="trading")
    target = currency_get_enabled(code=to_code, purpose="trading")
    if source.pk == target.pk:
        raise ServiceError("swap_same_currency", "A swap needs two different currencies.")
    amount = amount_validate(amount=amount, currency=source)
    routes = swap_routes(from_currency=source, to_currency=target)
    if not routes:
        raise ServiceError(
            "swap_no_route",
            f"No market, direct or through a common currency, converts {source.code} into {target.code}.",
            details={"from": source.code, "to": target.code},
        )
    legs, fills, received = _price(user, routes, amount)
    return SwapQuote.objects.create(
        user=user,
        from_currency=source,
        to_currency=target,
        from_amount=fills[0].quantity if fills[0].quantity is not None else amount,
        to_amount=received,
        route=[leg.as_json() for leg in legs],
        expires_at=timezone.now() + quote_ttl(),
    )


def quote_status(quote: SwapQuote) -> str:
    """The stored status, ``expired`` for an open quote past its time."""
    if quote.status == SwapQuote.Status.OPEN and quote.expires_at <= timezone.now():
        return SwapQuote.Status.EXPIRED
    return quote.status


def _route_legs(route: list[dict[str, str]]) -> list[Leg]:
    legs = []
    for step in route:
        market = market_get_open(symbol=step["market"])
        legs.append(Leg(market, step["side"]))
    return legs


def _route_unavailable(symbols: list[str]) -> bool:
    """True when the route's markets are run by different matcher processes."""
    owners = set(
        MatcherState.objects.filter(market__symbol__in=symbols).exclude(owner="").values_list("owner", flat=True)
    )
    return len(owners) > 1


def swap_execute(*, user: User, quote_id: uuid.UUID | str, slippage: Decimal) -> SwapExecution:
    """Execute the user's quote with at most ``slippage`` (a fraction: 0.01 = 1 %) less
    than its ``to_amount``: hold ``from_amount`` and leave the swap ``pending`` for the
    matcher, which executes it all at once or fails it and releases the hold.

    Errors: ``account_frozen`` (403), ``swap_quote_not_found`` (404, also for another
    user's quote), ``swap_quote_used``, ``swap_quote_expired``, ``slippage_invalid``,
    ``market_halted``/``market_cancel_only``, ``swap_route_unavailable``,
    ``swap_insufficient_liquidity``, ``swap_own_orders``, ``swap_slippage_exceeded`` (409
    when the stored book already gives less than the bound), ``insufficient_funds``.
    Nothing is held or stored when it refuses."""
    user_check_not_frozen(user=user)
    try:
        quote = SwapQuote.objects.select_related("from_currency", "to_currency").get(pk=quote_id, user=user)
    except (SwapQuote.DoesNotExist, ValueError):
        raise NotFound("swap_quote_not_found", "No such swap quote.") from None
    status = quote_status(quote)
    if status == SwapQuote.Status.EXPIRED:
        raise Conflict("swap_quote_expired", "The quote has expired: ask for a new one.")
    if status != SwapQuote.Status.OPEN:
        raise Conflict("swap_quote_used", f"The quote is {status}: ask for a new one.", details={"status": status})
    if not isinstance(slippage, Decimal) or not slippage.is_finite() or not Decimal(0) <= slippage < 1:
        raise ServiceError("slippage_invalid", "The slippage is a fraction from 0 to less than 1 (0.01 = 1 %).")
    target = quote.to_currency
    minimum = floor_to(Fraction(quote.to_amount) * (1 - Fraction(slippage)), target.precision)
    legs = _route_legs(quote.route)
    symbols = [leg.market.symbol for leg in legs]
    if _route_unavailable(symbols):
        raise Conflict(
            "swap_route_unavailable",
            f"The markets of this route ({', '.join(symbols)}) are run by different matchers.",
            details={"markets": symbols},
        )
    received = _price(user, [legs], quote.from_amount)[2]
    if received < minimum:
        raise Conflict(
            "swap_slippage_exceeded",
            f"The book now gives {received:f} {target.code}, less than the bound {minimum:f}.",
            details={"to_amount": str(received), "min_to_amount": str(minimum)},
        )
    with transaction.atomic():
        updated = SwapQuote.objects.filter(pk=quote.pk, status=SwapQuote.Status.OPEN).update(
            status=SwapQuote.Status.EXECUTED
        )
        if not updated:
            raise Conflict("swap_quote_used", "The quote was executed already.")
        swap = SwapExecution.objects.create(
            quote=quote,
            user=user,
            from_currency=quote.from_currency,
            to_currency=target,
            from_amount=quote.from_amount,
            min_to_amount=minimum,
            route=quote.route,
            market=legs[0].market,  # its matcher executes the swap
            deadline=timezone.now() + quote_ttl(),
        )
        funds_hold(
            user=user,
            currency=quote.from_currency,
            amount=quote.from_amount,
            reference=f"swap:{swap.pk}",
            idempotency_key=f"swap-hold:{swap.pk}",
        )
    return swap


def swap_get_own(*, user: User, swap_id: int) -> SwapExecution:
    swap = SwapExecution.objects.select_related("from_currency", "to_currency").filter(pk=swap_id, user=user).first()
    if swap is None:
        raise NotFound("swap_not_found", "No such swap.")
    return swap


# --- Execution in the matcher process ----------------------------------------------------


class SwapAbort(Exception):
    """The swap cannot complete: fail it with ``code``."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


def _book_levels(matcher: MarketMatcher, resting_side: int, own: Mapping[int, int]) -> Iterator[tuple[int, int]]:
    """The in-memory book's levels on ``resting_side``, best first, less the user's own
    orders; read with ``depth``, more levels as needed, never changing the book."""
    if matcher.book is None:  # its last batch failed and the rebuild too
        matcher.rebuild()
    n, seen = 64, 0
    while True:
        bids, asks = matcher.book.depth(n)
        levels = bids if resting_side == BUY else asks
        for price, qty in levels[seen:]:
            yield price, qty - own.get(price, 0)
        if len(levels) < n:
            return
        seen, n = n, n * 8


def _own_levels(leg: Leg, user_id: int) -> dict[int, int]:
    resting_side = Side.BUY if leg.side == Side.SELL else Side.SELL
    spec = leg.spec
    own: dict[int, int] = defaultdict(int)
    for price, quantity, filled in Order.objects.filter(
        market=leg.market, user_id=user_id, side=resting_side, status__in=_RESTING
    ).values_list("price", "quantity", "filled_quantity"):
        own[to_ticks(spec, price)] += to_lots(spec, quantity) - spec.qty_to_lots(filled)
    return own


def _swap_fail(swap: SwapExecution, code: str) -> bool:
    """Mark the swap failed and release its hold, once."""
    with transaction.atomic():
        updated = SwapExecution.objects.filter(pk=swap.pk, status=SwapExecution.Status.PENDING).update(
            status=SwapExecution.Status.FAILED, reason=code, updated_at=timezone.now()
        )
        if not updated:
            return False
        SwapQuote.objects.filter(pk=swap.quote_id).update(status=SwapQuote.Status.FAILED)
        funds_release(
            user=swap.user,
            currency=swap.from_currency,
            amount=swap.from_amount,
            reference=f"swap:{swap.pk}",
            idempotency_key=f"swap-release:{swap.pk}",
        )
    logger.info("swap %s failed: %s", swap.pk, code)
    return True


def _leg_order(
    swap: SwapExecution, index: int, leg: Leg, quantity: Decimal | None, quote_amount: Decimal | None, rates: Any
) -> Order:
    """The leg as a market IOC order, ``pending`` (the matcher applies it at once)."""
    market = leg.market
    if leg.side == Side.SELL:
        hold_currency, hold_amount = market.base, quantity
    else:
        hold_currency, hold_amount = market.quote, quote_amount
    return Order.objects.create(
        user_id=swap.user_id,
        client_order_id=f"swap:{swap.pk}:{index}",
        market=market,
        side=leg.side,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.IOC,
        quantity=quantity,
        quote_amount=quote_amount,
        maker_fee_rate=rates.maker,
        taker_fee_rate=rates.taker,
        hold_currency=hold_currency,
        hold_amount=hold_amount,
        hold_left=hold_amount,
        status=OrderStatus.PENDING,
    )


def _received(order: Order) -> Decimal:
    with localcontext(MONEY):
        return order.filled_quote - order.fee_paid if order.side == Side.SELL else order.filled_quantity


@dataclass(frozen=True, slots=True)
class _Plan:
    legs: list[Leg]
    rates: list[Any]
    received: Decimal


def _swap_check(swap: SwapExecution, by_symbol: Mapping[str, MarketMatcher]) -> _Plan:
    """Step 1: the user not frozen since the request; on the in-memory books, without
    changing them, every leg must fill completely without reaching the user's own orders
    and the result reach ``min_to_amount``; ``SwapAbort`` otherwise."""
    try:
        user_check_not_frozen(user=swap.user)  # account_frozen
        legs = _route_legs(swap.route)  # market_halted, market_cancel_only
        rates = [fee_rates_for(user=swap.user, market=leg.market) for leg in legs]
        own = {leg: _own_levels(leg, swap.user_id) for leg in legs}

        def levels_of(leg: Leg) -> Iterator[tuple[int, int]]:
            resting_side = BUY if leg.side == Side.SELL else SELL
            return _book_levels(by_symbol[leg.market.symbol], resting_side, own[leg])

        fills = _route_fill(legs, swap.from_amount, [r.taker for r in rates], levels_of)
        received = _check_fills(legs, fills)
        _check_own_orders(fills, own.__getitem__)
    except ServiceError as exc:
        raise SwapAbort(exc.code, exc.message) from None
    if received < swap.min_to_amount:
        raise SwapAbort("swap_slippage_exceeded", f"the books give {received}, less than {swap.min_to_amount}")
    return _Plan(legs, rates, received)


def _swap_apply(swap: SwapExecution, plan: _Plan, by_symbol: Mapping[str, MarketMatcher]) -> None:
    """Step 2: every leg through its book and every change committed in one transaction.
    Raises (rolling back) if the real outcome is not the complete fill within the bound."""
    with transaction.atomic():
        if not SwapExecution.objects.select_for_update().filter(pk=swap.pk, status=SwapExecution.Status.PENDING):
            return
        # The user's row, locked: a freeze (``accounts.services.user_freeze`` locks it too)
        # either committed before and is seen here, or waits for this swap.
        if User.objects.select_for_update().filter(pk=swap.user_id).values_list("frozen_at", flat=True).get():
            raise SwapAbort("account_frozen", "the account was frozen before the swap executed")
        order_ids = []
        amount = swap.from_amount
        for index, (leg, rates) in enumerate(zip(plan.legs, plan.rates, strict=True)):
            quantity = quote_amount = None
            if leg.side == Side.SELL:
                lots, _ = _leg_size(leg, amount, rates.taker)
                quantity = leg.spec.lots_to_qty(lots)
            else:
                quote_amount = amount
            order = _leg_order(swap, index, leg, quantity, quote_amount, rates)
            if index:  # the first leg spends the swap's hold; a later leg holds what the one before gave
                funds_hold(
                    user=swap.user,
                    currency=order.hold_currency,
                    amount=order.hold_amount,
                    reference=f"order:{order.pk}",
                    idempotency_key=f"order-hold:{order.pk}",
                )
            by_symbol[leg.market.symbol].apply_in_transaction([order])
            if order.status != OrderStatus.FILLED or (quantity is not None and order.filled_quantity != quantity):
                raise SwapAbort("swap_insufficient_liquidity", f"leg {index} ended {order.status}")
            order_ids.append(order.pk)
            amount = _received(order)
        if amount < swap.min_to_amount:
            raise SwapAbort("swap_slippage_exceeded", f"the legs gave {amount}, less than {swap.min_to_amount}")
        SwapExecution.objects.filter(pk=swap.pk).update(
            status=SwapExecution.Status.COMPLETED, to_amount=amount, order_ids=order_ids, updated_at=timezone.now()
        )


def _pending_swaps(matchers: Sequence[MarketMatcher]) -> list[SwapExecution]:
    """The oldest ``EXECUTE_BATCH`` pending swaps whose first market one of ``matchers``
    runs, oldest first: each market's are read on their own, so the swaps of markets run
    elsewhere (perhaps by a process that is down) never stand in the way."""
    ids = sorted(
        pk
        for matcher in matchers
        if matcher.market is not None
        for (pk,) in _PENDING_SWAPS.rows(market_id=matcher.market.pk)
    )[:EXECUTE_BATCH]
    if not ids:
        return []
    return list(
        SwapExecution.objects.filter(pk__in=ids, status=SwapExecution.Status.PENDING)
        .select_related("user", "from_currency")
        .order_by("pk")
    )


#: How long after its deadline a pending swap waits for a matcher before the orders worker
#: fails it (``swaps_fail_overdue``): normally the matcher of its first market fails it
#: at its deadline, on its next round.
OVERDUE_AFTER = timedelta(seconds=60)


def swaps_fail_overdue(*, limit: int = 500) -> int:
    """Fail the pending swaps whose deadline passed more than ``OVERDUE_AFTER`` ago with
    ``swap_quote_expired`` and release their holds; returns how many. These are swaps no
    matcher picked up: their first market's matcher is down, or runs nowhere. Run by the
    orders worker (``orders.tasks.swaps_fail_overdue``), beside the matchers: it changes
    only a swap still pending, and a matcher executes one only under its row's lock and
    while it is pending, so whichever commits first decides and the other does nothing."""
    cutoff = timezone.now() - OVERDUE_AFTER
    overdue = (
        SwapExecution.objects.filter(status=SwapExecution.Status.PENDING, deadline__lt=cutoff)
        .select_related("user", "from_currency")
        .order_by("pk")[:limit]
    )
    failed = 0
    for swap in overdue:
        if _swap_fail(swap, "swap_quote_expired"):
            logger.warning("swap %s failed by the orders worker: no matcher executed it by its deadline", swap.pk)
            failed += 1
    return failed


def swaps_execute(*, matchers: Sequence[MarketMatcher]) -> int:
    """Execute or fail the pending swaps whose first market this process runs; returns
    how many it finished. Called by ``matchers_run`` between rounds."""
    from orders.matcher import FencingError

    by_symbol = {m.symbol: m for m in matchers}
    done = 0
    for swap in _pending_swaps(matchers):
        symbols = [step["market"] for step in swap.route]
        if not all(s in by_symbol for s in symbols):
            done += _swap_fail(swap, "swap_route_unavailable")
            continue
        if timezone.now() > swap.deadline:
            done += _swap_fail(swap, "swap_quote_expired")
            continue
        try:
            plan = _swap_check(swap, by_symbol)
        except SwapAbort as exc:
            logger.info("swap %s refused: %s", swap.pk, exc)
            done += _swap_fail(swap, exc.code)
            continue
        try:
            _swap_apply(swap, plan, by_symbol)
        except FencingError:
            raise
        except Exception as exc:  # rolled back: the books are ahead of the database
            if isinstance(exc, SwapAbort):
                logger.warning("swap %s: %s after the check; rolled back", swap.pk, exc)
            else:
                logger.exception("swap %s: execution failed; rolled back", swap.pk)
            for symbol in dict.fromkeys(symbols):
                by_symbol[symbol].rebuild()
            done += _swap_fail(swap, exc.code if isinstance(exc, SwapAbort) else "swap_error")
            continue
        done += 1
    return done
