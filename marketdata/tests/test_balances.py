"""The private ``balances`` channel: every balance change reaches the user, from trades
and from everything else (wallets.events); a matcher batch sends one message per user."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from accounts.services import tokens_issue
from marketdata.tests.conftest import D, drain, place
from marketdata.tests.test_consumers import call, connect, frames_until, on, send
from wallets.services import transfer_create
from wallets.tests.events import UserEvents, as_decimals, balances_now


@pytest.mark.django_db(transaction=True)
def test_a_matcher_batch_sends_one_balance_message_per_user(alice, bob, alice_client, bob_client, markets):
    for price in ("2000", "2001", "2002", "2003", "2004"):
        place(alice_client, side="sell", price=price, quantity="0.2")
    drain()
    place(bob_client, side="buy", price="2010", quantity="1.5")  # takes all five levels, one batch
    events = UserEvents(alice, bob)
    assert drain() == 1
    [for_alice], [for_bob] = events.take(alice), events.take(bob)
    traded = ("ETH", "USDT")  # each currency once per message, with the balances after the batch
    for user, message in ((alice, for_alice), (bob, for_bob)):
        assert [b["currency"] for b in message["balances"]] == list(traded)
        assert as_decimals(message) == {c: v for c, v in balances_now(user).items() if c in traded}
    assert as_decimals(for_alice)["ETH"] == (D(999), D(0))
    assert as_decimals(for_bob)["ETH"] == (D(1001), D(0))  # 1 of 1.5 filled; the rest rests on its hold
    assert as_decimals(for_bob)["USDT"][1] > 0


@pytest.mark.django_db(transaction=True)
def test_a_transfer_reaches_the_recipients_socket(alice, bob):
    async def scenario() -> None:
        ws = await connect()
        await send(ws, op="auth", token=(await call(tokens_issue, user=bob))["access"])
        await frames_until(ws, on("authenticated"))
        await send(ws, op="subscribe", channels=["balances"])
        await frames_until(ws, on("subscribed"))
        await call(
            transfer_create,
            sender=alice,
            recipient_email=bob.email,
            currency_code="USDT",
            amount=Decimal("12.5"),
            idempotency_key="t-ws",
        )
        frame, _ = await frames_until(ws, on("update", "balances"))
        assert frame["data"] == [{"currency": "USDT", "available": "1000012.500000", "locked": "0.000000"}]
        await ws.disconnect()

    async_to_sync(scenario)()
