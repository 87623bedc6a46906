"""An authenticated socket does not outlive what authenticated it: an expired access
token, "log out everywhere", a disabled account, a revoked API key or an ended session
close it with an ``auth_expired`` frame and close code 4001; a fresh token works again."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.api_keys import api_key_create, api_key_revoke, sign
from accounts.models import User
from accounts.services import tokens_issue, user_logout_everywhere
from accounts.tests.helpers import enable_otp, otp_code
from kootabase.asgi import application
from marketdata import consumers
from marketdata.tests.test_consumers import ORIGIN, call, connect, frames_until, on, send
from wallets.services import transfer_create

pytestmark = pytest.mark.django_db(transaction=True)


async def until_closed(ws: WebsocketCommunicator, timeout: float = 15.0) -> tuple[list[dict[str, Any]], int]:
    """The frames received until the server closed the socket, and its close code."""
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        output = await ws.receive_output(timeout=max(0.01, deadline - time.monotonic()))
        if output["type"] == "websocket.close":
            return frames, output.get("code")
        frames.append(json.loads(output["text"]))


async def authenticated(token: str) -> WebsocketCommunicator:
    ws = await connect()
    await send(ws, op="auth", id=1, token=token)
    frame, _ = await frames_until(ws, on("authenticated"))
    assert frame["id"] == 1
    await send(ws, op="subscribe", channels=["balances"])
    await frames_until(ws, on("subscribed"))
    return ws


def assert_ended(frames: list[dict[str, Any]], code: int, reason: str) -> None:
    assert code == consumers.AUTH_EXPIRED == 4001
    assert frames[-1]["op"] == "error" and frames[-1]["code"] == "auth_expired"
    assert frames[-1]["details"] == {"reason": reason}


def test_an_expired_token_closes_the_socket_and_a_fresh_one_works(monkeypatch, alice, bob):
    # simplejwt reads ACCESS_TOKEN_LIFETIME into the class at import; the test shortens it there.
    monkeypatch.setattr(AccessToken, "lifetime", timedelta(seconds=2))
    tokens = tokens_issue(user=bob)

    async def scenario() -> None:
        ws = await authenticated(tokens["access"])
        frames, code = await until_closed(ws)  # the client sends nothing: the expiry timer closes it
        assert_ended(frames, code, "token_expired")

        # The client refreshes its token and reconnects; private events flow again.
        refreshed = await call(
            lambda: APIClient().post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json")
        )
        assert refreshed.status_code == 200, refreshed.json()
        ws = await authenticated(refreshed.json()["access"])
        await call(
            transfer_create,
            sender=alice,
            recipient_email=bob.email,
            currency_code="USDT",
            amount=Decimal(1),
            idempotency_key="after-refresh",
        )
        update, _ = await frames_until(ws, on("update", "balances"))
        assert update["data"][0]["currency"] == "USDT"
        await ws.disconnect()

    async_to_sync(scenario)()


def test_a_message_after_log_out_everywhere_closes_the_socket(monkeypatch, alice):
    monkeypatch.setattr(consumers, "RECHECK_EVERY", 3600.0)  # only the message can notice
    monkeypatch.setattr(consumers, "RECHECK_ON_MESSAGE_AFTER", 0.0)

    async def scenario() -> None:
        ws = await authenticated((await call(tokens_issue, user=alice))["access"])
        await send(ws, op="ping", id=1)
        assert await ws.receive_json_from() == {"op": "pong", "id": 1}
        await call(user_logout_everywhere, user=alice)
        await send(ws, op="ping", id=2)  # not answered: the socket is closed instead
        frames, code = await until_closed(ws)
        assert_ended(frames, code, "logged_out")
        assert not [f for f in frames if f["op"] == "pong"]

    async_to_sync(scenario)()


def test_the_periodic_check_closes_a_disabled_account_and_a_revoked_api_key(monkeypatch, alice, bob):
    monkeypatch.setattr(consumers, "RECHECK_EVERY", 0.2)
    enable_otp(bob)
    created = api_key_create(user=bob, label="bot", scopes=["read"], otp_code=otp_code(bob))

    async def scenario() -> None:
        a = await authenticated((await call(tokens_issue, user=alice))["access"])
        b = await connect()
        expires = int(time.time() * 1000) + 10_000
        signature = sign(secret=created.secret, method="GET", path="/ws/v1/", query="", expires=expires, body="auth")
        await send(b, op="auth", api_key=created.api_key.key, expires=expires, signature=signature)
        await frames_until(b, on("authenticated"))

        await call(lambda: User.objects.filter(pk=alice.pk).update(is_active=False))
        frames, code = await until_closed(a)
        assert_ended(frames, code, "account_disabled")

        await send(b, op="ping", id=1)  # bob's key still holds
        assert await b.receive_json_from() == {"op": "pong", "id": 1}
        await call(api_key_revoke, user=bob, api_key_id=created.api_key.pk)
        frames, code = await until_closed(b)
        assert_ended(frames, code, "api_key_revoked")

    async_to_sync(scenario)()


def test_a_session_socket_closes_when_the_session_ends(monkeypatch, alice):
    monkeypatch.setattr(consumers, "RECHECK_ON_MESSAGE_AFTER", 0.0)
    browser = Client()
    browser.force_login(alice)
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={browser.cookies[django_settings.SESSION_COOKIE_NAME].value}"

    async def scenario() -> None:
        ws = WebsocketCommunicator(application, "/ws/v1/", headers=[*ORIGIN, (b"cookie", cookie.encode())])
        assert (await ws.connect())[0]
        await send(ws, op="subscribe", id=1, channels=["balances"])  # authenticated at connect
        assert (await ws.receive_json_from())["op"] == "subscribed"
        await call(browser.logout)
        await send(ws, op="ping")
        frames, code = await until_closed(ws)
        assert_ended(frames, code, "session_ended")

    async_to_sync(scenario)()
