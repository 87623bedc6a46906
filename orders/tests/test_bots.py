"""A bot trades with a signed API key: ``trade`` places and cancels, ``read`` only reads."""

import pytest
from rest_framework.test import APIClient

from accounts.tests.helpers import enable_otp, otp_code, signed
from orders.matcher import MarketMatcher
from orders.models import Order, OrderStatus

ORDER = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "1000.00", "quantity": "0.5"}


@pytest.fixture
def keys(alice):
    from accounts.api_keys import api_key_create

    enable_otp(alice)

    def make(scopes):
        created = api_key_create(user=alice, label="bot", scopes=scopes, ip_allowlist=(), otp_code=otp_code(alice))
        return {"key": created.api_key.key, "secret": created.secret}

    return make


@pytest.mark.django_db
def test_a_trade_key_places_and_cancels_an_order(alice, keys):
    client, key = APIClient(), keys(["read", "trade"])
    placed = signed(client, "POST", "/api/v1/orders", body=ORDER, **key)
    assert placed.status_code == 201, placed.json()
    order_id = placed.json()["id"]

    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        matcher.run_once()
        assert signed(client, "GET", f"/api/v1/orders/{order_id}", **key).json()["status"] == "open"
        assert signed(client, "DELETE", f"/api/v1/orders/{order_id}", **key).status_code == 202
        matcher.run_once()
    finally:
        matcher.stop()
    assert Order.objects.get(pk=order_id).status == OrderStatus.CANCELLED


@pytest.mark.django_db
def test_a_read_key_reads_but_cannot_trade(alice, keys, unchanged):
    client, key = APIClient(), keys(["read"])
    assert signed(client, "GET", "/api/v1/orders", **key).status_code == 200
    with unchanged():
        refused = signed(client, "POST", "/api/v1/orders", body=ORDER, **key)
    assert refused.status_code == 403
    assert refused.json()["code"] == "api_key_scope"
