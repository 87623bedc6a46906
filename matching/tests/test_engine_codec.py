"""Decimal <-> integer conversion at the engine boundary."""

from __future__ import annotations

from decimal import Decimal

import pytest

from matching.engine import AmountOutOfRange, MarketSpec, PriceNotOnTick, QtyNotOnLot
from matching.engine.codec import CodecError

ETH_USDT = MarketSpec(tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"))


def test_exact_round_trips() -> None:
    assert ETH_USDT.price_to_ticks(Decimal("3012.34")) == 301234
    assert ETH_USDT.ticks_to_price(301234) == Decimal("3012.34")
    assert str(ETH_USDT.ticks_to_price(301200)) == "3012.00"
    assert ETH_USDT.qty_to_lots(Decimal("1.5")) == 15000
    assert ETH_USDT.lots_to_qty(15000) == Decimal("1.5")
    assert ETH_USDT.price_to_ticks(Decimal("3012.340000")) == 301234
    assert ETH_USDT.quote_unit == Decimal("0.000001")


def test_non_multiples_are_rejected_never_rounded() -> None:
    with pytest.raises(PriceNotOnTick):
        ETH_USDT.price_to_ticks(Decimal("3012.345"))
    with pytest.raises(QtyNotOnLot):
        ETH_USDT.qty_to_lots(Decimal("0.00015"))
    with pytest.raises(AmountOutOfRange):
        ETH_USDT.qty_to_lots(Decimal("-1"))
    with pytest.raises(AmountOutOfRange):
        ETH_USDT.price_to_ticks(Decimal("NaN"))
    with pytest.raises(TypeError):
        ETH_USDT.price_to_ticks(3012.34)  # type: ignore[arg-type]


def test_odd_tick_sizes() -> None:
    spec = MarketSpec(tick_size=Decimal("0.5"), lot_size=Decimal("25"))
    assert spec.price_to_ticks(Decimal("7.5")) == 15
    assert spec.ticks_to_price(15) == Decimal("7.5")
    with pytest.raises(PriceNotOnTick):
        spec.price_to_ticks(Decimal("7.25"))
    assert spec.qty_to_lots(100) == 4
    assert spec.quote_unit == Decimal("12.5")


def test_quote_budget_truncates_and_reports_the_remainder() -> None:
    units, rest = ETH_USDT.split_quote(Decimal("100.0000015"))
    assert units == 100_000_001
    assert rest == Decimal("0.0000005")
    assert ETH_USDT.units_to_quote(units) + rest == Decimal("100.0000015")
    assert ETH_USDT.quote_to_units(Decimal("100")) == 100_000_000
    # one lot at p ticks costs p quote units
    p = ETH_USDT.price_to_ticks(Decimal("3000"))
    assert ETH_USDT.units_to_quote(p) == ETH_USDT.ticks_to_price(p) * ETH_USDT.lots_to_qty(1)


def test_huge_precision_is_exact() -> None:
    spec = MarketSpec(tick_size=Decimal("1E-8"), lot_size=Decimal("1E-18"))
    price = Decimal("92233720368.54775807")  # 2**63 - 1 ticks
    assert spec.price_to_ticks(price) == 2**63 - 1
    assert spec.ticks_to_price(2**63 - 1) == price
    assert spec.quote_unit == Decimal("1E-26")
    units, rest = spec.split_quote(Decimal("0.000000000000000000000000015"))
    assert (units, rest) == (1, Decimal("5E-27"))
    with pytest.raises(AmountOutOfRange):
        spec.price_to_ticks(Decimal("92233720368.54775808"))


def test_spec_must_be_positive() -> None:
    with pytest.raises(CodecError):
        MarketSpec(tick_size=Decimal("0"), lot_size=Decimal("1"))
    with pytest.raises(CodecError):
        MarketSpec(tick_size=Decimal("0.1"), lot_size=Decimal("-1"))
