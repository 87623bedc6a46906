"""Exact conversion between ``Decimal`` amounts and the engine's integers.

Inside the engine a price is a whole number of ticks, a quantity a whole
number of lots, and a quote amount a whole number of *quote units*, where one
quote unit is ``tick_size * lot_size``: one lot at a price of one tick.  A lot
at ``p`` ticks therefore costs exactly ``p`` quote units, which is what lets a
market order sized by quote amount run on integers.

Prices and quantities that are not exact multiples of the tick or the lot
raise ``PriceNotOnTick`` / ``QtyNotOnLot``; nothing is ever rounded.  The
one exception is the quote budget of a market order: ``quote_to_units``
truncates to whole units and ``split_quote`` also returns the sub-unit
remainder, which the engine never sees and the caller must not hold (or must
release straight away).  Floats are refused everywhere with ``TypeError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from .constants import MAX_INT


class CodecError(ValueError):
    """A boundary value that cannot be represented exactly."""


class PriceNotOnTick(CodecError):
    pass


class QtyNotOnLot(CodecError):
    pass


class AmountOutOfRange(CodecError):
    pass


def _ratio(value: Decimal | int, what: str) -> tuple[int, int]:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{what} must be a Decimal or an int, not {type(value).__name__}")
    if isinstance(value, int):
        return value, 1
    if not value.is_finite():
        raise AmountOutOfRange(f"{what} must be finite, got {value}")
    return value.as_integer_ratio()


def _step(step: Decimal) -> tuple[int, int]:
    """A step as (coefficient, exponent): ``coefficient * 10**exponent == step``."""
    _sign, digits, exponent = step.as_tuple()
    assert isinstance(exponent, int)
    return (int("".join(map(str, digits))) if digits else 0), exponent


def _scaled(units: int, step: tuple[int, int]) -> Decimal:
    """``units * step`` exactly, with the step's exponent (no context rounding)."""
    coefficient, exponent = step
    return Decimal(f"{units * coefficient}E{exponent}")


@dataclass(frozen=True)
class MarketSpec:
    """Tick and lot size of one market, and the conversions they define."""

    tick_size: Decimal
    lot_size: Decimal
    _tick: tuple[int, int] = field(init=False, repr=False, compare=False)
    _lot: tuple[int, int] = field(init=False, repr=False, compare=False)
    _unit: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise CodecError(f"{name} must be a positive finite Decimal, got {value!r}")
        # The steps' digits, taken apart once: every trade converts its price and quantity.
        object.__setattr__(self, "_tick", _step(self.tick_size))
        object.__setattr__(self, "_lot", _step(self.lot_size))
        (tick, tick_exponent), (lot, lot_exponent) = self._tick, self._lot
        object.__setattr__(self, "_unit", (tick * lot, tick_exponent + lot_exponent))  # tick_size * lot_size

    @property
    def quote_unit(self) -> Decimal:
        """The quote amount of one quote unit: ``tick_size * lot_size``."""
        return self.units_to_quote(1)

    def _to_steps(self, value: Decimal | int, step: Decimal, what: str, error: type) -> int:
        n, d = _ratio(value, what)
        sn, sd = step.as_integer_ratio()
        # value / step == (n * sd) / (d * sn)
        num, den = n * sd, d * sn
        steps, rest = divmod(num, den)
        if rest:
            raise error(f"{what} {value} is not a multiple of {step}")
        if steps < 0 or steps > MAX_INT:
            raise AmountOutOfRange(f"{what} {value} is out of range")
        return steps

    def price_to_ticks(self, price: Decimal | int) -> int:
        """Price -> ticks; raises ``PriceNotOnTick`` unless exact."""
        return self._to_steps(price, self.tick_size, "price", PriceNotOnTick)

    def ticks_to_price(self, ticks: int) -> Decimal:
        return _scaled(ticks, self._tick)

    def qty_to_lots(self, qty: Decimal | int) -> int:
        """Quantity -> lots; raises ``QtyNotOnLot`` unless exact."""
        return self._to_steps(qty, self.lot_size, "quantity", QtyNotOnLot)

    def lots_to_qty(self, lots: int) -> Decimal:
        return _scaled(lots, self._lot)

    def split_quote(self, amount: Decimal | int) -> tuple[int, Decimal]:
        """Quote amount -> (whole quote units, sub-unit remainder)."""
        n, d = _ratio(amount, "quote amount")
        if n < 0:
            raise AmountOutOfRange(f"quote amount {amount} is negative")
        un, ud = (self.tick_size * self.lot_size).as_integer_ratio()
        units = (n * ud) // (d * un)
        if units > MAX_INT:
            raise AmountOutOfRange(f"quote amount {amount} is out of range")
        with localcontext() as ctx:
            ctx.prec = 400  # wide enough to keep the subtraction exact
            remainder = Decimal(amount) - self.units_to_quote(units)
        return units, remainder

    def quote_to_units(self, amount: Decimal | int) -> int:
        """Quote amount -> whole quote units, truncated (see ``split_quote``)."""
        return self.split_quote(amount)[0]

    def units_to_quote(self, units: int) -> Decimal:
        return _scaled(units, self._unit)
