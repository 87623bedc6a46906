from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from django.contrib.auth.models import Group
from hypothesis import given
from hypothesis import strategies as st

from kootabase.errors import ServiceError
from orders import demo
from orders.models import FeeTier, Market
from orders.pricing import (
    FeeRates,
    buy_hold,
    ceil_to,
    fee_due,
    fee_rates_for,
    floor_to,
    market_check,
    market_spec,
    quote_budget_units,
    to_lots,
    to_ticks,
)


def test_demo_seeds_two_markets_idempotently(db):
    demo.seed()
    demo.seed()
    assert list(Market.objects.values_list("symbol", flat=True)) == ["BTC-USDT", "ETH-USDT"]
    eth = Market.objects.get(symbol="ETH-USDT")
    assert (eth.tick_size, eth.lot_size, eth.min_notional) == (Decimal("0.01"), Decimal("0.0001"), Decimal(10))
    assert (eth.maker_fee_rate, eth.taker_fee_rate) == (Decimal("0.001"), Decimal("0.002"))
    assert eth.status == Market.Status.ACTIVE


def test_prices_and_quantities_convert_exactly_or_fail(eth_usdt):
    spec = market_spec(eth_usdt)
    assert to_ticks(spec, Decimal("2000.01")) == 200001
    assert to_lots(spec, Decimal("1.5")) == 15000
    with pytest.raises(ServiceError) as exc:
        to_ticks(spec, Decimal("2000.001"))
    assert exc.value.code == "price_not_on_tick"
    with pytest.raises(ServiceError) as exc:
        to_lots(spec, Decimal("0.00001"))
    assert exc.value.code == "quantity_not_on_lot"
    with pytest.raises(ServiceError) as exc:
        to_ticks(spec, Decimal("2000.001"), "stop_price")
    assert exc.value.code == "stop_price_not_on_tick"
    with pytest.raises(ServiceError) as exc:
        to_lots(spec, Decimal(0))
    assert exc.value.code == "quantity_not_positive"


def test_market_sizes_must_fit_currency_precision(eth_usdt):
    market_check(eth_usdt)
    eth_usdt.tick_size = Decimal("0.0001")  # tick x lot = 1e-8, finer than USDT's 6 places
    with pytest.raises(ServiceError) as exc:
        market_check(eth_usdt)
    assert exc.value.code == "market_invalid"


def test_rounding_helpers_are_exact():
    assert floor_to(Decimal("1.0000019"), 6) == Decimal("1.000001")
    assert ceil_to(Decimal("1.0000011"), 6) == Decimal("1.000002")
    assert ceil_to(Decimal("1.000001"), 6) == Decimal("1.000001")
    assert buy_hold(price=Decimal("2000"), quantity=Decimal("1.5"), rate=Decimal("0.002"), precision=6) == Decimal(
        "3006"
    )


def test_quote_budget_never_exceeds_the_hold(eth_usdt):
    spec = market_spec(eth_usdt)
    units = quote_budget_units(spec=spec, amount=Decimal("100"), taker_rate=Decimal("0.002"))
    budget = spec.units_to_quote(units)
    assert budget + floor_to(budget * Decimal("0.002"), 6) <= Decimal(100)
    assert budget == Decimal("99.800399")


def test_fee_is_cumulative_per_role():
    rates = FeeRates(maker=Decimal("0.001"), taker=Decimal("0.002"))
    assert fee_due(taker_quote=Decimal("0.333333"), maker_quote=Decimal(0), rates=rates, precision=6) == Decimal(
        "0.000666"
    )
    assert fee_due(taker_quote=Decimal("100"), maker_quote=Decimal("50.5"), rates=rates, precision=6) == Decimal(
        "0.2505"
    )


@given(
    taker=st.decimals(min_value=0, max_value=Decimal("1e17"), places=18, allow_nan=False, allow_infinity=False),
    maker=st.decimals(min_value=0, max_value=Decimal("1e17"), places=18, allow_nan=False, allow_infinity=False),
    taker_rate=st.decimals(min_value=0, max_value=Decimal("0.1"), places=18, allow_nan=False, allow_infinity=False),
    maker_rate=st.decimals(min_value=0, max_value=Decimal("0.1"), places=18, allow_nan=False, allow_infinity=False),
    precision=st.integers(min_value=0, max_value=18),
)
def test_fee_is_the_exact_floor_of_each_part(taker, maker, taker_rate, maker_rate, precision):
    rates = FeeRates(maker=maker_rate, taker=taker_rate)
    # The reference sums as Fractions: Decimal's default context would round past 28 digits.
    expected = Fraction(floor_to(Fraction(taker) * Fraction(taker_rate), precision)) + Fraction(
        floor_to(Fraction(maker) * Fraction(maker_rate), precision)
    )
    due = fee_due(taker_quote=taker, maker_quote=maker, rates=rates, precision=precision)
    assert Fraction(due) == expected and due.as_tuple().exponent == -precision


def test_fee_tier_lowest_rate_wins(eth_usdt, alice):
    assert fee_rates_for(user=alice, market=eth_usdt) == FeeRates(Decimal("0.001"), Decimal("0.002"))
    vip = Group.objects.create(name="vip")
    FeeTier.objects.create(group=vip, market=None, maker_fee_rate=Decimal("0.0008"), taker_fee_rate=Decimal("0.003"))
    FeeTier.objects.create(
        group=vip, market=eth_usdt, maker_fee_rate=Decimal("0.0009"), taker_fee_rate=Decimal("0.001")
    )
    assert fee_rates_for(user=alice, market=eth_usdt) == FeeRates(Decimal("0.001"), Decimal("0.002"))
    alice.groups.add(vip)
    assert fee_rates_for(user=alice, market=eth_usdt) == FeeRates(Decimal("0.0008"), Decimal("0.001"))
