"""The order's API shape, built directly for speed, is exactly DRF's field-by-field result."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from orders.api.serializers import OrderSerializer
from orders.models import Order
from orders.services import order_cancel, order_place
from orders.tests.test_matching import run_matcher


def field_by_field(order: Order) -> dict:
    return dict(serializers.ModelSerializer.to_representation(OrderSerializer(), order))


def test_every_kind_of_order_has_the_same_shape_both_ways(alice, bob, eth_usdt):
    place = {"market_symbol": "ETH-USDT"}
    order_place(user=alice, side="sell", type="limit", price=Decimal("2000.5"), quantity=Decimal("1.25"), **place)
    order_place(user=bob, side="buy", type="limit", price=Decimal("2001"), quantity=Decimal("0.5"), **place)
    order_place(user=bob, side="buy", type="market", quote_amount=Decimal("100"), **place)
    order_place(
        user=bob,
        side="buy",
        type="stop-limit",
        price=Decimal("2500"),
        stop_price=Decimal("2400"),
        quantity=Decimal("0.1"),
        **place,
    )
    resting = order_place(user=alice, side="sell", type="limit", price=Decimal("3000"), quantity=Decimal("2"), **place)
    run_matcher()
    order_cancel(user=alice, order_id=resting.pk)
    run_matcher()

    orders = list(Order.objects.select_related("market", "market__quote").order_by("id"))
    assert {o.status for o in orders} >= {"filled", "partially_filled", "cancelled", "untriggered"}
    for order in orders:
        assert OrderSerializer(order).data == field_by_field(order)
    assert OrderSerializer(orders, many=True).data == [field_by_field(o) for o in orders]
