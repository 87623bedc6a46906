"""Valuing amounts in the reference currency: 1:1 for itself, the last trade price of
BASE-REF, or the inverse of REF-BASE; never a guess."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kootabase.errors import ServiceError
from kyc import selectors
from kyc.tests.conftest import D, trade_at
from marketdata.models import MarketState
from wallets.tests.factories import CurrencyFactory

pytestmark = pytest.mark.django_db


def test_the_reference_currency_counts_one_to_one(usdt):
    assert selectors.value_in_reference(currency=usdt, amount=D("12.345678")) == Fraction("12.345678")


def test_a_base_currency_counts_at_its_markets_last_trade_price(eth):
    trade_at("2000")
    trade_at("2100.5")
    assert MarketState.objects.get(market__symbol="ETH-USDT").last_price == D("2100.5")
    assert selectors.value_in_reference(currency=eth, amount=D("0.2")) == Fraction("420.1")


def test_the_inverse_market_gives_the_price_when_the_reference_is_its_base(settings, usdt, eth):
    trade_at("2000")
    settings.KYC_REFERENCE_CURRENCY = "ETH"
    assert selectors.value_in_reference(currency=usdt, amount=D(3000)) == Fraction(3, 2)
    assert selectors.value_in_reference(currency=eth, amount=D(1)) == 1


def test_no_market_or_no_trade_is_refused(usdt, eth):
    btc = CurrencyFactory(code="BTC")  # BTC-USDT is listed but has never traded
    for currency in (eth, btc, CurrencyFactory(code="DOGE")):
        with pytest.raises(ServiceError) as caught:
            selectors.value_in_reference(currency=currency, amount=D(1))
        assert caught.value.code == "kyc_price_unavailable"
        assert caught.value.details == {"currency": currency.code, "reference_currency": "USDT"}


def test_shown_values_are_rounded_up_to_the_reference_precision(usdt):
    assert selectors.shown(Fraction(1, 3)) == D("0.333334")
    assert selectors.shown(Fraction(5)) == D(5)
