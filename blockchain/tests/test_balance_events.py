"""Deposits and withdrawals tell the user their new balances, as every posting does
(wallets.events): credited deposits, the withdrawal's hold, its settlement and a release."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.tests.helpers import enable_otp
from blockchain import tasks
from blockchain.scanner import scanner_run
from blockchain.services import deposit_address_get_or_create, withdrawal_cancel
from blockchain.tests.conftest import fund_user, request_withdrawal, send_eth
from wallets.tests.events import UserEvents, as_decimals, balances_now

D = Decimal


@pytest.fixture
def after_commit(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_a_credited_deposit_is_announced_once(chain, network, alice, after_commit):
    address = deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum").address
    send_eth(chain, address, 1_500_000_000_000_000_000)
    events = UserEvents(alice)
    with after_commit():
        scanner_run(network_id=network.pk)  # seen, not yet confirmed: no balance moved
    assert events.take(alice) == []
    chain.mine(2)
    with after_commit():
        scanner_run(network_id=network.pk)
    assert [as_decimals(m) for m in events.take(alice)] == [{"ETH": (D("1.5"), D(0))}]
    chain.mine(3)
    with after_commit():
        scanner_run(network_id=network.pk)  # scanned again: credited once, announced once
    assert events.take(alice) == []


def test_a_withdrawal_announces_its_hold_its_settlement_and_a_release(chain, network, alice, after_commit):
    enable_otp(alice)
    fund_user(alice, "ETH", "10")
    events = UserEvents(alice)

    with after_commit():
        request_withdrawal(alice, amount="2", key="w-1")
    assert [as_decimals(m) for m in events.take(alice)] == [{"ETH": (D("7.999"), D("2.001"))}]

    with after_commit():
        tasks.process_withdrawals()  # sent and mined; not yet confirmed
    assert events.take(alice) == []
    chain.mine(2)
    with after_commit():
        tasks.process_withdrawals()  # confirmed: the amount and the fee leave the locked balance
    # Two postings (the amount, then the fee), each with the balances as it left them.
    assert [as_decimals(m) for m in events.take(alice)] == [
        {"ETH": (D("7.999"), D("0.001"))},
        {"ETH": (D("7.999"), D(0))},
    ]
    assert balances_now(alice) == {"ETH": (D("7.999"), D(0))}

    with after_commit():
        second, _ = request_withdrawal(alice, amount="1", key="w-2")
    with after_commit():
        withdrawal_cancel(user=alice, withdrawal_id=second.pk)
    assert [as_decimals(m) for m in events.take(alice)] == [
        {"ETH": (D("6.998"), D("1.001"))},
        {"ETH": (D("7.999"), D(0))},
    ]
