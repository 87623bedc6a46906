"""Exact money arithmetic of orders: engine conversions, fee rates, holds and fees.

Decimal <-> engine integers go only through ``matching.engine.MarketSpec``: a price off
the tick or a quantity off the lot is an error, never rounded. Products and quotients
are computed as exact fractions and rounded once, in the direction that can never take
more than was held: holds round up, budgets and fees round down.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from fractions import Fraction
from functools import lru_cache

from django.db.models import Q

from accounts.models import User
from kootabase.errors import ServiceError
from kootabase.statements import Statement
from matching.engine import MAX_INT, AmountOutOfRange, MarketSpec, PriceNotOnTick, QtyNotOnLot
from orders.catalog import fee_tiers_for
from orders.models import FeeTier, Market
from wallets.models import MONEY

# Sums and products of two money values (at most 36 digits each) are exact in _EXACT; should
# one ever need rounding, Inexact raises instead. _FLOOR rounds down on purpose (quantize).
# The hot path's fee arithmetic uses them instead of Fraction.
_EXACT = Context(prec=80, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
_FLOOR = Context(prec=80, rounding=ROUND_FLOOR, traps=[InvalidOperation, DivisionByZero, Overflow])


def quantum(precision: int) -> Decimal:
    return Decimal(1).scaleb(-precision)


def _to_decimal(value: Fraction, precision: int, *, up: bool) -> Decimal:
    scale = 10**precision
    scaled = value * scale
    whole = -((-scaled.numerator) // scaled.denominator) if up else scaled.numerator // scaled.denominator
    return Decimal(whole).scaleb(-precision)


def floor_to(value: Fraction | Decimal, precision: int) -> Decimal:
    """``value`` rounded down to ``precision`` decimal places, exactly."""
    return _to_decimal(Fraction(value), precision, up=False)


def ceil_to(value: Fraction | Decimal, precision: int) -> Decimal:
    """``value`` rounded up to ``precision`` decimal places, exactly."""
    return _to_decimal(Fraction(value), precision, up=True)


def market_spec(market: Market) -> MarketSpec:
    tick_size, lot_size = market.tick_size, market.lot_size
    if type(tick_size) is not Decimal or type(lot_size) is not Decimal:
        return MarketSpec(tick_size=tick_size, lot_size=lot_size)  # refused there, as always
    return _spec(str(tick_size), str(lot_size))


@lru_cache(maxsize=1024)
def _spec(tick_size: str, lot_size: str) -> MarketSpec:
    """One (immutable) spec per tick and lot size as written (``0.01`` and ``0.010`` scale
    prices differently): the matcher asks for it for every order and trade."""
    return MarketSpec(tick_size=Decimal(tick_size), lot_size=Decimal(lot_size))


def market_check(market: Market) -> None:
    """A market's sizes must fit its currencies: a lot is a whole number of base
    quanta and a quote unit (tick x lot) a whole number of quote quanta, so every fill
    converts to ledger amounts exactly. ``market_invalid`` otherwise."""
    with localcontext(MONEY):
        checks = {
            "lot_size": (market.lot_size, market.base.precision),
            "tick_size x lot_size": (market.tick_size * market.lot_size, market.quote.precision),
        }
    for name, (value, precision) in checks.items():
        if value <= 0 or Fraction(value) * 10**precision % 1:
            raise ServiceError(
                "market_invalid",
                f"{market.symbol}: {name} ({value}) is not a multiple of 1e-{precision}.",
                details={"field": name},
            )
    for name in ("maker_fee_rate", "taker_fee_rate"):
        fee_rate_check(getattr(market, name), name, code="market_invalid", subject=market.symbol)


def fee_rate_check(rate: Decimal, name: str, *, code: str, subject: str) -> None:
    """A fee rate is a fraction in [0, 1): a negative one would pay the user out of the
    fee account (fees are rounded down), one of 1 or more would take all a trade is worth."""
    if not Decimal(0) <= rate < 1:
        raise ServiceError(code, f"{subject}: {name} must be in [0, 1).", details={"field": name})


def to_ticks(spec: MarketSpec, price: Decimal, field: str = "price") -> int:
    if price <= 0:
        raise ServiceError(f"{field}_not_positive", f"The {field.replace('_', ' ')} must be greater than zero.")
    try:
        ticks = spec.price_to_ticks(price)
    except PriceNotOnTick:
        raise ServiceError(
            f"{field}_not_on_tick",
            f"The {field.replace('_', ' ')} must be a multiple of the tick size {spec.tick_size}.",
            details={field: str(price), "tick_size": str(spec.tick_size)},
        ) from None
    except AmountOutOfRange:
        raise ServiceError(f"{field}_out_of_range", f"The {field.replace('_', ' ')} is out of range.") from None
    if ticks < 1:
        raise ServiceError(f"{field}_not_positive", f"The {field.replace('_', ' ')} must be greater than zero.")
    return ticks


def to_lots(spec: MarketSpec, quantity: Decimal) -> int:
    if quantity <= 0:
        raise ServiceError("quantity_not_positive", "The quantity must be greater than zero.")
    try:
        lots = spec.qty_to_lots(quantity)
    except QtyNotOnLot:
        raise ServiceError(
            "quantity_not_on_lot",
            f"The quantity must be a multiple of the lot size {spec.lot_size}.",
            details={"quantity": str(quantity), "lot_size": str(spec.lot_size)},
        ) from None
    except AmountOutOfRange:
        raise ServiceError("quantity_out_of_range", "The quantity is out of range.") from None
    if lots < 1:
        raise ServiceError("quantity_not_positive", "The quantity must be greater than zero.")
    return lots


@dataclass(frozen=True, slots=True)
class FeeRates:
    maker: Decimal
    taker: Decimal

    @property
    def highest(self) -> Decimal:
        return max(self.maker, self.taker)


def fee_rates_for(*, user: User, market: Market) -> FeeRates:
    """The user's rates on ``market``: the lowest of the market's and of every tier that
    applies through the user's groups (tiers for this market or for all markets)."""
    maker, taker = market.maker_fee_rate, market.taker_fee_rate
    if not fee_tiers_for(market):  # the common case: no tier to look the user's groups up for
        return FeeRates(maker=maker, taker=taker)
    for tier_maker, tier_taker in _USER_TIERS.rows(market_id=market.pk, user_id=user.pk):
        maker = min(maker, tier_maker)
        taker = min(taker, tier_taker)
    return FeeRates(maker=maker, taker=taker)


#: The rates of the tiers that apply to a user on a market (placement reads them for every
#: order of a market with tiers: compiled once).
_USER_TIERS = Statement(
    lambda market_id, user_id: FeeTier.objects.filter(
        Q(market_id=market_id) | Q(market__isnull=True), group__user=user_id
    ).values_list("maker_fee_rate", "taker_fee_rate"),
    market_id=FeeTier._meta.get_field("market"),
    user_id=User._meta.pk,
)


def buy_hold(*, price: Decimal, quantity: Decimal, rate: Decimal, precision: int) -> Decimal:
    """Quote to lock for a buy of ``quantity`` at up to ``price``: the notional plus the
    highest fee it can pay, rounded up to the quote precision."""
    return ceil_to(Fraction(price) * Fraction(quantity) * (1 + Fraction(rate)), precision)


def quote_budget_units(*, spec: MarketSpec, amount: Decimal, taker_rate: Decimal) -> int:
    """The engine budget (quote units) of a market buy that holds ``amount``:
    floor(amount / (1 + taker rate)), so notional plus fee never exceed the hold."""
    budget = Fraction(amount) / (1 + Fraction(taker_rate))
    unit = Fraction(spec.quote_unit)
    units = int(budget // unit)
    if units > MAX_INT:
        raise ServiceError("quote_amount_out_of_range", "The quote amount is beyond what one order can trade.")
    return units


def fee_due(*, taker_quote: Decimal, maker_quote: Decimal, rates: FeeRates, precision: int) -> Decimal:
    """An order's cumulative fee for what it has filled: each role's part times its rate,
    rounded down to the quote precision. A trade's fee is the growth of this total."""
    step = quantum(precision)
    taker = _EXACT.multiply(taker_quote, rates.taker).quantize(step, context=_FLOOR)
    maker = _EXACT.multiply(maker_quote, rates.maker).quantize(step, context=_FLOOR)
    return _EXACT.add(taker, maker)
