"""One scanner per network, on MariaDB: concurrent scanners credit every deposit once."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from blockchain.models import Deposit, DepositStatus
from blockchain.scanner import scanner_run
from blockchain.services import deposit_address_get_or_create
from blockchain.tests.conftest import assert_ledger_ok, balance, send_eth
from wallets.models import JournalEntry

pytestmark = [pytest.mark.mariadb, pytest.mark.django_db(transaction=True)]


def test_concurrent_scanners_of_one_network_credit_each_deposit_once(chain, network, alice):
    address = deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum").address
    for _ in range(3):
        send_eth(chain, address, 10**18)
    chain.mine(3)
    results, errors = [], []
    barrier = threading.Barrier(4)

    def scan() -> None:
        try:
            barrier.wait()
            results.append(scanner_run(network_id=network.pk))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(r.credited for r in results) == 3
    assert sum(not r.busy for r in results) >= 1
    assert Deposit.objects.filter(status=DepositStatus.CONFIRMED).count() == 3
    assert JournalEntry.objects.filter(kind="deposit").count() == 3
    assert balance(alice, "ETH") == Decimal(3)
    assert_ledger_ok()
