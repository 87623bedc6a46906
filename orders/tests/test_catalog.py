"""The process's catalog of markets and fee tiers: no query per order, and every change
seen by the next order."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import Group
from django.core.cache import cache

from orders import catalog
from orders.models import FeeTier, Order
from orders.services import market_get

URL = "/api/v1/orders"
BODY = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000", "quantity": "1"}


def test_a_known_market_costs_no_query_once_loaded(eth_usdt, django_assert_num_queries):
    market_get(symbol="ETH-USDT")
    with django_assert_num_queries(0):
        market = market_get(symbol="eth-usdt")
    assert (market.symbol, market.base.code, market.quote.code) == ("ETH-USDT", "ETH", "USDT")


def test_callers_get_their_own_copy(eth_usdt):
    first = market_get(symbol="ETH-USDT")
    first.status = "halted"
    assert market_get(symbol="ETH-USDT").status == "active"


def test_a_halt_saved_after_loading_is_seen_by_the_next_order(alice_client, eth_usdt):
    assert alice_client.post(URL, BODY).status_code == 201
    eth_usdt.status = "halted"
    eth_usdt.save()
    response = alice_client.post(URL, BODY)
    assert (response.status_code, response.json()["code"]) == (409, "market_halted")
    assert Order.objects.count() == 1


def test_a_fee_tier_added_after_loading_applies_to_the_next_order(alice_client, alice, eth_usdt):
    assert alice_client.post(URL, BODY).status_code == 201
    vip = Group.objects.create(name="vip")
    alice.groups.add(vip)
    FeeTier.objects.create(market=eth_usdt, group=vip, maker_fee_rate=Decimal("0"), taker_fee_rate=Decimal("0.0005"))
    response = alice_client.post(URL, BODY)
    assert response.status_code == 201
    order = Order.objects.get(pk=response.json()["id"])
    assert (order.maker_fee_rate, order.taker_fee_rate) == (Decimal("0"), Decimal("0.0005"))


def test_another_process_changing_the_version_makes_this_one_reload(eth_usdt, django_assert_num_queries, monkeypatch):
    market_get(symbol="ETH-USDT")
    cache.set(catalog.markets.version_key, "changed elsewhere", None)  # as another process's change does
    with django_assert_num_queries(0):
        market_get(symbol="ETH-USDT")  # read again only after CHECK_INTERVAL
    monkeypatch.setattr(catalog.markets, "check_interval", 0.0)
    with django_assert_num_queries(2):  # markets with their currencies, and the fee tiers
        market_get(symbol="ETH-USDT")
