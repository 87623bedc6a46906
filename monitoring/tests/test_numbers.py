"""The dashboard's numbers against known data, built with the real services."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

import pytest
from django.core.cache import cache

from accounts.tests.helpers import enable_otp
from aml.models import RuleParameter
from blockchain.hdwallet import hot_wallet
from blockchain.models import Deposit, DepositStatus, WithdrawalStatus
from blockchain.scanner import scanner_run
from blockchain.services import deposit_address_get_or_create, withdrawal_screen
from blockchain.tests.conftest import fund_user, request_withdrawal, send_eth
from kootabase.celery import QUEUES
from kootabase.celery import app as celery_app
from kyc.tests.helpers import kyc_verified
from marketdata.models import Candle
from marketdata.tests.conftest import drain
from monitoring import selectors
from monitoring.selectors import dashboard_data
from monitoring.services import order_sample_take, worker_heartbeat
from orders.models import Order
from orders.services import order_place
from wallets.models import Currency
from wallets.services import ledger_audit_run
from wallets.tests.factories import UserFactory, fund

pytestmark = pytest.mark.django_db


def place(user, symbol: str, side: str, quantity: str, price: str) -> Order:
    return order_place(
        user=user, market_symbol=symbol, side=side, type="limit", quantity=Decimal(quantity), price=Decimal(price)
    )


def test_orders_per_minute_come_from_the_samples(alice):
    first = order_sample_take()
    assert (first.orders, first.minutes) == (None, None)  # the first sample is only a start
    for i in range(3):
        place(alice, "ETH-USDT", "buy", "0.01", str(1000 + i))
    second = order_sample_take(now=first.minute + timedelta(minutes=1, seconds=2))
    assert (second.orders, second.minutes) == (3, 1)
    place(alice, "BTC-USDT", "buy", "0.001", "20000")
    place(alice, "BTC-USDT", "buy", "0.001", "20001")
    third = order_sample_take(now=second.minute + timedelta(minutes=2))  # one sample missed: 2 minutes
    assert (third.orders, third.minutes) == (2, 2)
    assert order_sample_take(now=third.minute + timedelta(seconds=30)).pk == third.pk  # one per minute

    data = dashboard_data(now=third.minute + timedelta(seconds=5))
    orders, minutes = data["series"]["orders"], data["series"]["minutes"]
    assert orders[-3:] == [3, 1.0, 1.0]  # the minute before each sample; a gap spread evenly
    assert minutes[-3:] == [f"{m:%H:%M}" for m in (first.minute, second.minute, second.minute + timedelta(minutes=1))]
    assert orders[:-3] == [None] * 57  # no sample covers them
    assert data["last_minute"]["orders"] == 1.0
    assert selectors.orders_rate_latest() == 1.0


def test_trades_per_minute_come_from_the_candles(alice, bob):
    place(alice, "ETH-USDT", "sell", "1", "2000")
    place(alice, "ETH-USDT", "sell", "1", "2001")
    place(bob, "ETH-USDT", "buy", "2", "2001")
    drain("ETH-USDT")
    candle = Candle.objects.get(market__symbol="ETH-USDT", interval="1m")
    assert candle.trade_count == 2

    data = dashboard_data(now=candle.open_time + timedelta(minutes=1, seconds=1))
    assert data["last_minute"]["trades"] == 2
    assert data["last_minute"]["trades_by_market"] == {"ETH-USDT": 2, "BTC-USDT": 0}
    assert data["series"]["trades"][-1] == 2 and sum(data["series"]["trades"]) == 2
    assert data["matchers"]["ETH-USDT"]["last_trade_no"] == 2
    assert data["matchers"]["ETH-USDT"]["pending"] == 0
    # Two minutes later that minute is the one before the last.
    later = dashboard_data(now=candle.open_time + timedelta(minutes=2, seconds=1))
    assert later["series"]["trades"][-2:] == [2, 0] and later["last_minute"]["trades"] == 0


def test_matcher_lag_counts_pending_orders_and_the_oldest_ones_age(alice):
    orders = [place(alice, "BTC-USDT", "buy", "0.001", str(20000 + i)) for i in range(3)]
    oldest = min(order.created_at for order in orders)

    data = dashboard_data(now=oldest + timedelta(seconds=90))
    btc, eth = data["matchers"]["BTC-USDT"], data["matchers"]["ETH-USDT"]
    assert (btc["pending"], btc["oldest_pending_age"], btc["status"]) == (3, 90.0, "active")
    assert (eth["pending"], eth["oldest_pending_age"]) == (0, None)
    assert btc["heartbeat_age"] is None  # no matcher has run

    drain("BTC-USDT")
    data = dashboard_data(now=oldest + timedelta(seconds=90))
    assert (data["matchers"]["BTC-USDT"]["pending"], data["matchers"]["BTC-USDT"]["oldest_pending_age"]) == (0, None)
    assert data["matchers"]["BTC-USDT"]["last_seq"] == 3
    assert data["matchers"]["BTC-USDT"]["heartbeat_age"] is not None


def test_deposits_withdrawals_and_review_cases(chain, network, usdt_asset):
    network.confirmations = 3
    network.save()
    depositor = UserFactory(email="depositor@example.com")
    address = deposit_address_get_or_create(user=depositor, currency_code="ETH", network_name="ethereum").address
    send_eth(chain, address, 10**18)
    scanner_run(network_id=network.pk)
    assert Deposit.objects.get().status == DepositStatus.PENDING

    customer = UserFactory(email="customer@example.com")
    enable_otp(customer)
    kyc_verified(customer)
    fund_user(customer, "USDT", "5000")
    RuleParameter.objects.create(rule="threshold", kind="withdrawal", currency=usdt_asset.currency, amount=1000)
    request_withdrawal(customer, currency="USDT", amount="10", key="small-1")
    request_withdrawal(customer, currency="USDT", amount="20", key="small-2")
    flagged, _ = request_withdrawal(customer, currency="USDT", amount="1500", key="large")
    assert withdrawal_screen(withdrawal_id=flagged.pk).status == WithdrawalStatus.REVIEW

    queues = dashboard_data()["work_queues"]
    assert queues["deposits_pending"] == 1
    assert queues["withdrawals_pending"] == 2
    assert queues["withdrawals_in_review"] == 1
    assert queues["withdrawals_by_status"]["requested"] == 2
    assert queues["aml_open_cases"] == 1


def test_reserve_ratio_per_currency(chain, network, alice):
    """Coins: the hot wallet's balance on the chain (no deposit unswept); liabilities: what
    the users hold, here only alice's funds."""
    hot = Decimal(chain.w3.eth.get_balance(hot_wallet().address)) / Decimal(10**18)
    cache.clear()
    data = dashboard_data()["reserves"]["currencies"]
    eth = data["ETH"]
    assert Decimal(eth["liabilities"]) == Decimal(1000)
    assert Decimal(eth["coins"]) == hot
    assert Decimal(eth["ratio"]) == (hot / Decimal(1000)).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)
    assert [asset["network"] for asset in eth["assets"]] == ["ethereum"]

    fund(alice, Currency.objects.get(code="ETH"), "1000")  # liabilities double ...
    assert dashboard_data()["reserves"]["currencies"]["ETH"]["liabilities"] == "1000"  # ... after the cache's minute
    cache.clear()
    assert dashboard_data()["reserves"]["currencies"]["ETH"]["liabilities"] == "2000"


def test_the_last_ledger_audit(alice):
    assert dashboard_data()["ledger_audit"] is None
    run = ledger_audit_run()
    audit = dashboard_data(now=run.finished_at + timedelta(minutes=5))["ledger_audit"]
    assert audit["ok"] is True and audit["violations"] == 0 and audit["age"] == 300.0
    assert audit["accounts_checked"] == run.accounts_checked > 0


def test_worker_heartbeats_and_queue_lengths():
    worker_heartbeat(hostname="celery@worker-a", pid=11, queues=["default", "orders"])
    worker_heartbeat(hostname="celery@worker-b", pid=12, queues=["blockchain"])
    workers = {w.hostname: w for w in selectors.celery_workers(now=selectors.timezone.now())}
    assert set(workers) == {"celery@worker-a", "celery@worker-b"}
    assert workers["celery@worker-a"].alive and workers["celery@worker-a"].queues == ["default", "orders"]
    later = selectors.timezone.now() + timedelta(minutes=2)
    assert not any(w.alive for w in selectors.celery_workers(now=later))  # silent for two minutes: not alive

    before = selectors.celery_queue_lengths()
    assert set(before) == set(QUEUES) and all(length is not None for length in before.values())
    for _ in range(3):
        celery_app.send_task("kootabase.tasks.heartbeat")  # no worker runs: they wait in "default"
    try:
        after = dashboard_data()["celery"]["queues"]
        assert after["default"] == before["default"] + 3
        assert after["orders"] == before["orders"]
    finally:
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_purge("default")
