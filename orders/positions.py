"""Positions: what a user holds per asset, what it cost and what it made, in one quote
currency (USDT unless asked otherwise).

Average-cost method, from the user's trades (as maker or taker) in the markets quoted in
the chosen currency (``<asset>-<quote>``), oldest first:

- a buy adds its quantity and its cost (notional + the fee paid) to the position;
- a sell takes its quantity out of the position at the average cost and realizes
  ``proceeds - fee - quantity x average cost``. The part of a sell larger than the
  position (coins that came from a deposit or a transfer) realizes nothing: its cost is
  unknown.

Trades in markets quoted in another currency are not counted (no conversion at the
trade's time): their coins are holdings of unknown cost like deposits.

The holding itself is the ledger's (available + locked). Of it, ``costed_quantity``
(at most the traded position) has the average cost; the rest, ``uncosted_quantity``,
has none. Unrealized PnL is ``costed_quantity x (last price - average cost)`` at the
last trade price of ``<asset>-<quote>``; ``market_value`` is the whole holding at that
price. Values are exact fractions rounded half-even once, to the quote's precision.

``position_close`` sells the free balance through the normal placement path: with a
market order, or below a price floor with an immediate-or-cancel limit sell at the floor.
See docs/orders.md.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

from django.db.models import Q

from accounts.models import User
from kootabase.errors import ServiceError
from orders.models import Market, Order, OrderType, Side, TimeInForce, Trade
from orders.services import market_get, market_reference_price, order_place
from wallets.models import MONEY, AccountKind, Currency, LedgerAccount
from wallets.selectors import currency_get

DEFAULT_QUOTE = "USDT"


@dataclass(frozen=True, slots=True)
class Position:
    asset: str
    quantity: Decimal
    available: Decimal
    costed_quantity: Decimal
    uncosted_quantity: Decimal
    average_cost: Decimal | None
    last_price: Decimal | None
    market_value: Decimal | None
    realized_pnl: Decimal
    unrealized_pnl: Decimal | None


@dataclass(frozen=True, slots=True)
class Positions:
    quote: str
    positions: list[Position]


@dataclass
class _Book:
    """The traded position of one asset, as exact fractions."""

    quantity: Fraction = Fraction(0)
    cost: Fraction = Fraction(0)
    realized: Fraction = Fraction(0)

    def buy(self, quantity: Fraction, cost: Fraction) -> None:
        self.quantity += quantity
        self.cost += cost

    def sell(self, quantity: Fraction, proceeds: Fraction) -> None:
        sold = min(quantity, self.quantity)
        if sold <= 0:
            return
        cost_out = self.cost * sold / self.quantity
        self.realized += proceeds * sold / quantity - cost_out
        self.cost -= cost_out
        self.quantity -= sold


def quote_currency_get(*, code: str | None) -> Currency:
    """The valuation currency ``code`` (default USDT); ``unknown_currency`` otherwise."""
    code = (code or DEFAULT_QUOTE).strip().upper()
    currency = currency_get(code=code)
    if currency is None:
        raise ServiceError("unknown_currency", f"Unknown currency {code!r}.", details={"currency": code})
    return currency


def _rounded(value: Fraction, precision: int) -> Decimal:
    """``value`` rounded half-even to ``precision`` decimal places, exactly."""
    return Decimal(round(value * 10**precision)).scaleb(-precision)


def _holdings(user: User) -> dict[int, tuple[Decimal, Decimal]]:
    """(available, locked) per currency id."""
    held: dict[int, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for currency_id, kind, balance in LedgerAccount.objects.filter(
        user=user, kind__in=(AccountKind.AVAILABLE, AccountKind.LOCKED)
    ).values_list("currency_id", "kind", "balance"):
        held[currency_id][0 if kind == AccountKind.AVAILABLE else 1] += balance
    return {currency_id: (a, b) for currency_id, (a, b) in held.items()}


def positions_of_user(*, user: User, quote_code: str | None = None) -> Positions:
    """The user's positions valued in ``quote_code`` (see the module docstring)."""
    quote = quote_currency_get(code=quote_code)
    markets = {m.base_id: m for m in Market.objects.filter(quote=quote).select_related("base")}
    books: dict[int, _Book] = defaultdict(_Book)
    trades = (
        Trade.objects.filter(Q(maker_user=user) | Q(taker_user=user), market__quote=quote)
        .order_by("market_id", "trade_no")
        .values_list(
            "market__base_id", "taker_user_id", "taker_side", "quantity", "quote_amount", "maker_fee", "taker_fee"
        )
    )
    for base_id, taker_user_id, taker_side, quantity, notional, maker_fee, taker_fee in trades:
        is_taker = taker_user_id == user.pk
        side = taker_side if is_taker else (Side.SELL if taker_side == Side.BUY else Side.BUY)
        fee = Fraction(taker_fee if is_taker else maker_fee)
        if side == Side.BUY:
            books[base_id].buy(Fraction(quantity), Fraction(notional) + fee)
        else:
            books[base_id].sell(Fraction(quantity), Fraction(notional) - fee)
    held = _holdings(user)
    asset_ids = ({cid for cid, (a, b) in held.items() if a or b} | set(books)) - {quote.pk}
    currencies = Currency.objects.in_bulk(asset_ids)
    precision = quote.precision
    positions = []
    for asset_id in sorted(asset_ids, key=lambda cid: currencies[cid].code):
        available, locked = held.get(asset_id, (Decimal(0), Decimal(0)))
        with localcontext(MONEY):
            quantity = available + locked
        book = books.get(asset_id, _Book())
        costed = min(book.quantity, Fraction(quantity))
        average = book.cost / book.quantity if book.quantity > 0 else None
        market = markets.get(asset_id)
        last_price = (
            Trade.objects.filter(market=market).order_by("-trade_no").values_list("price", flat=True).first()
            if market is not None
            else None
        )
        unrealized: Decimal | None = None
        if costed > 0 and average is not None and last_price is not None:
            unrealized = _rounded(costed * (Fraction(last_price) - average), precision)
        elif costed == 0:
            unrealized = Decimal(0)
        costed_decimal = _rounded(costed, currencies[asset_id].precision)
        with localcontext(MONEY):
            uncosted = quantity - costed_decimal
        positions.append(
            Position(
                asset=currencies[asset_id].code,
                quantity=quantity,
                available=available,
                costed_quantity=costed_decimal,
                uncosted_quantity=uncosted,
                average_cost=_rounded(average, precision) if average is not None and costed > 0 else None,
                last_price=last_price,
                market_value=(
                    _rounded(Fraction(quantity) * Fraction(last_price), precision) if last_price is not None else None
                ),
                realized_pnl=_rounded(book.realized, precision),
                unrealized_pnl=unrealized,
            )
        )
    return Positions(quote=quote.code, positions=positions)


def position_close(
    *, user: User, asset_code: str, quote_code: str | None = None, min_price: Decimal | None = None
) -> Order:
    """Sell the user's free (available) ``asset`` into ``quote``, the quantity rounded down
    to the market's lot, through ``order_place`` (hold, pending, the matcher): with a market
    order, or given ``min_price`` with an immediate-or-cancel limit sell at that price, which
    sells nothing below it (the unfilled rest expires and its hold is released).

    ``unknown_currency``, ``unknown_market``, or ``nothing_to_close`` when less than one lot
    is free, or when the quantity is worth less than the market's minimum notional at the
    price placement values the order at: ``min_price`` when given, otherwise the last price
    (before the market's first trade, the best bid). A ``min_price`` that placement refuses
    (off the tick, not positive, out of range) gets placement's code for a price, named
    after this field (``min_price_not_on_tick``...)."""
    quote = quote_currency_get(code=quote_code)
    asset = currency_get(code=asset_code)
    if asset is None:
        raise ServiceError("unknown_currency", f"Unknown currency {asset_code!r}.", details={"currency": asset_code})
    market = market_get(symbol=f"{asset.code}-{quote.code}")
    account = LedgerAccount.objects.filter(user=user, currency=asset, kind=AccountKind.AVAILABLE).first()
    free = account.balance if account is not None else Decimal(0)
    lots = int(Fraction(free) / Fraction(market.lot_size))
    with localcontext(MONEY):
        quantity = market.lot_size * lots
    nothing_to_close = ServiceError(
        "nothing_to_close",
        f"Less than one lot ({market.lot_size.normalize():f} {asset.code}) or the minimum order value "
        f"of {market.symbol} is free to sell.",
        details={"available": str(free), "lot_size": str(market.lot_size)},
    )
    if lots < 1:
        raise nothing_to_close
    if min_price is None:
        with localcontext(MONEY):
            price = market_reference_price(market=market, side=Side.SELL)
            too_small = price is not None and price * quantity < market.min_notional
        if too_small:
            raise nothing_to_close
        return order_place(
            user=user, market_symbol=market.symbol, side=Side.SELL, type=OrderType.MARKET, quantity=quantity
        )
    # Placement checks the floor (tick, sign, range) and values a limit order at its own
    # price for the minimum notional: its refusals are worded for this request.
    try:
        return order_place(
            user=user,
            market_symbol=market.symbol,
            side=Side.SELL,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.IOC,
            price=min_price,
            quantity=quantity,
        )
    except ServiceError as exc:
        if exc.code == "below_min_notional":
            raise nothing_to_close from None
        if exc.code.startswith("price_"):
            details = {("min_price" if key == "price" else key): value for key, value in exc.details.items()}
            raise ServiceError(f"min_{exc.code}", f"min_price: {exc.message}", details=details) from None
        raise
