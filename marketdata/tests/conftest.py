"""Market-data fixtures: the demo markets, two funded traders, and helpers that place
orders through the REST API and run the real matcher."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from orders import demo
from orders.matcher import MarketMatcher
from orders.models import Market
from wallets.models import Currency
from wallets.tests.factories import UserFactory, fund


@pytest.fixture(autouse=True)
def _private_var_dir(settings, tmp_path):
    """Matcher lock files of the tests live apart from a running development instance."""
    settings.VAR_DIR = tmp_path


@pytest.fixture
def markets(db) -> dict[str, Market]:
    demo.seed()
    return {m.symbol: m for m in Market.objects.select_related("base", "quote")}


def trader(email: str):
    user = UserFactory(email=email)
    for code, amount in (("USDT", "1000000"), ("ETH", "1000"), ("BTC", "100")):
        fund(user, Currency.objects.get(code=code), amount)
    return user


@pytest.fixture
def alice(markets):
    return trader("alice@example.com")


@pytest.fixture
def bob(markets):
    return trader("bob@example.com")


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def alice_client(alice) -> APIClient:
    return client_of(alice)


@pytest.fixture
def bob_client(bob) -> APIClient:
    return client_of(bob)


def place(client: APIClient, market: str = "ETH-USDT", **fields) -> dict:
    body = {"market": market, "type": "limit", **{k: str(v) for k, v in fields.items()}}
    response = client.post("/api/v1/orders", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def early_in_a_minute(margin: float = 15.0) -> None:
    """Wait for the next minute when fewer than ``margin`` seconds of this one are left.
    The servers send the candle of the current minute, every half second: trades made in
    a minute's last moments may never be sent in their minute's candle, so a test that
    waits for them trades early in a minute."""
    if (second := time.time() % 60) > 60 - margin:
        time.sleep(60.2 - second)


def drain(symbol: str = "ETH-USDT") -> int:
    """Start the market's matcher, process everything pending, stop it; returns batches."""
    matcher = MarketMatcher(symbol=symbol)
    matcher.start()
    batches = 0
    try:
        while matcher.run_once():
            batches += 1
    finally:
        matcher.stop()
    return batches


@pytest.fixture
def matcher() -> Iterator[MarketMatcher]:
    """A started ETH-USDT matcher; ``matcher.run_once()`` processes one batch."""
    m = MarketMatcher(symbol="ETH-USDT")
    m.start()
    yield m
    m.stop()


D = Decimal
