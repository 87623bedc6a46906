"""What a matcher batch announces to each user: one ``user.events`` message per user per
batch, carrying the new state of each of their changed orders and each of their fills."""

from __future__ import annotations

from decimal import Decimal

from orders.models import Order
from orders.tests.test_matching import place, run_matcher
from wallets.tests.events import UserEvents


def test_one_message_per_user_per_batch_with_their_orders_and_fills(
    alice_client, bob_client, alice, bob, django_capture_on_commit_callbacks
):
    first = place(alice_client, side="sell", price="2000", quantity="1")
    second = place(alice_client, side="sell", price="2001", quantity="1")
    buy = place(bob_client, side="buy", price="2001", quantity="1.5")
    events = UserEvents(alice, bob)
    with django_capture_on_commit_callbacks(execute=True):
        run_matcher()

    [for_alice] = events.take(alice, kind="user.events")
    [for_bob] = events.take(bob, kind="user.events")
    assert events.take(alice, kind=None) == [] and events.take(bob, kind=None) == []
    assert [(o["id"], o["status"], Decimal(o["filled_quantity"])) for o in for_alice["orders"]] == [
        (first["id"], "filled", Decimal(1)),
        (second["id"], "partially_filled", Decimal("0.5")),
    ]
    assert [
        (o["id"], o["status"], Decimal(o["filled_quantity"]), Decimal(o["fee_paid"])) for o in for_bob["orders"]
    ] == [(buy["id"], "filled", Decimal("1.5"), Decimal("6.001"))]
    order = dict(for_bob["orders"][0])
    stored = Order.objects.get(pk=buy["id"])
    amounts = ("filled_quantity", "filled_quote", "fee_paid")
    assert {name: Decimal(order.pop(name)) for name in amounts} == {name: getattr(stored, name) for name in amounts}
    assert order == {
        "id": stored.pk,
        "client_order_id": stored.client_order_id,
        "market": "ETH-USDT",
        "side": "buy",
        "type": "limit",
        "status": "filled",
        "reject_reason": "",
    }
    assert [
        (t["id"], t["order_id"], t["side"], t["role"], t["price"], t["quantity"], t["fee"]) for t in for_alice["trades"]
    ] == [
        (1, first["id"], "sell", "maker", "2000", "1", "2"),
        (2, second["id"], "sell", "maker", "2001", "0.5", "1.0005"),
    ]
    assert [
        (t["id"], t["order_id"], t["side"], t["role"], t["quote_quantity"], t["fee"]) for t in for_bob["trades"]
    ] == [
        (1, buy["id"], "buy", "taker", "2000", "4"),
        (2, buy["id"], "buy", "taker", "1000.5", "2.001"),
    ]
    assert {t["market"] for t in for_bob["trades"]} == {"ETH-USDT"}
    assert {t["fee_currency"] for t in for_bob["trades"]} == {"USDT"}
