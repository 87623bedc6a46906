"""On MariaDB, requests of one user that race each other cannot both pass the tier's limit:
the check locks the user's KYC profile row, so the second one counts the first."""

from __future__ import annotations

import threading

import pytest
from eth_account import Account

from accounts.otp import otp_confirm, otp_enrol
from accounts.tests.helpers import otp_code
from blockchain.models import Withdrawal
from blockchain.services import withdrawal_request
from kootabase.errors import ServiceError
from kyc.tests.conftest import D
from wallets.models import LedgerAccount, Transfer
from wallets.services import ledger_audit_run, transfer_create
from wallets.tests.test_concurrency import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.django_db(transaction=True)]


def race(count: int, attempt) -> tuple[list[int], list[str]]:
    """Run ``attempt(i)`` in ``count`` threads released together; the ids made and the codes refused."""
    barrier = threading.Barrier(count)
    made: list[int] = []
    refused: list[str] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            made.append(attempt(i))
        except ServiceError as exc:
            refused.append(exc.code)

    assert run_threads(count, work) == []
    return made, refused


def test_racing_transfers_cannot_pass_the_limit_together(alice, bob):
    made, refused = race(
        6,
        lambda i: (
            transfer_create(
                sender=alice, recipient_email=bob.email, currency_code="USDT", amount=D(300), idempotency_key=f"t-{i}"
            ).pk
        ),
    )
    assert len(made) == 3  # 900; a fourth would make 1200 > 1000
    assert refused == ["kyc_limit_exceeded"] * 3
    assert Transfer.objects.filter(sender=alice).count() == 3
    assert LedgerAccount.objects.get(user=alice, currency__code="USDT", kind="available").balance == D(99100)
    assert ledger_audit_run(store=False).ok


def test_racing_withdrawals_cannot_pass_the_limit_together(alice, network):
    device = otp_enrol(user=alice)
    codes = otp_confirm(user=alice, code=otp_code(device))  # single-use recovery codes, one per thread
    made, refused = race(
        4,
        lambda i: (
            withdrawal_request(
                user=alice,
                currency_code="USDT",
                network_name="ethereum",
                address=Account.create().address,
                amount=D(400),
                idempotency_key=f"w-{i}",
                otp_code=codes[i],
            ).withdrawal.pk
        ),
    )
    assert len(made) == 2  # (400 + 1 fee) x 2 = 802; a third would make 1203 > 1000
    assert refused == ["kyc_limit_exceeded"] * 2
    assert Withdrawal.objects.filter(user=alice).count() == 2
    assert LedgerAccount.objects.get(user=alice, currency__code="USDT", kind="locked").balance == D(802)
    assert ledger_audit_run(store=False).ok


def test_opposite_transfers_at_once_neither_deadlock_nor_pass_the_limit(alice, bob):
    """Each transfer's insert takes shared locks on both users' rows (the foreign keys): the
    check's lock is the sender's KYC profile row, which nothing else locks, so transfers in
    opposite directions never wait on each other in a cycle."""
    pair = (alice, bob)
    made, refused = race(
        8,
        lambda i: (
            transfer_create(
                sender=pair[i % 2],
                recipient_email=pair[1 - i % 2].email,
                currency_code="USDT",
                amount=D(300),
                idempotency_key=f"o-{i}",
            ).pk
        ),
    )
    assert len(made) == 6  # three each way: 900 of each sender's 1000
    assert refused == ["kyc_limit_exceeded"] * 2
    assert {Transfer.objects.filter(sender=user).count() for user in pair} == {3}
    assert ledger_audit_run(store=False).ok
