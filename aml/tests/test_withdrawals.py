"""Withdrawals through the real pipeline: the screening puts a flagged one in ``review``
with its case (amount + fee held since the request); release approves it and it goes out,
reject releases the hold. The old per-asset review threshold is the threshold rule now."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account

from accounts.tests.helpers import enable_otp
from aml import services
from aml.models import Case, CaseStatus, ItemKind, RuleName
from aml.tests.conftest import assert_ledger_ok, balance, deposit_eth, limit
from audit.models import AuditEvent
from blockchain import tasks
from blockchain.models import Withdrawal, WithdrawalStatus
from blockchain.tests.conftest import fund_user, request_withdrawal
from wallets.models import AccountKind


@pytest.fixture
def rich_alice(alice, network):
    enable_otp(alice)
    fund_user(alice, "USDT", "900")
    return alice


def withdraw(user, amount: str, *, currency: str = "USDT", address: str | None = None, key: str = "w-1") -> Withdrawal:
    withdrawal, _ = request_withdrawal(user, currency=currency, amount=amount, address=address, key=key)
    tasks.withdrawal_screen(withdrawal.pk)
    withdrawal.refresh_from_db()
    return withdrawal


def test_a_clean_withdrawal_is_approved_without_a_case(chain, rich_alice):
    withdrawal = withdraw(rich_alice, "50")
    assert withdrawal.status == WithdrawalStatus.APPROVED and withdrawal.review_reason == ""
    assert not Case.objects.exists()


def test_a_withdrawal_at_the_threshold_waits_for_review_and_release_sends_it(chain, rich_alice, officer):
    limit(RuleName.THRESHOLD, ItemKind.WITHDRAWAL, "USDT", amount=Decimal(200))
    withdrawal = withdraw(rich_alice, "200")
    assert withdrawal.status == WithdrawalStatus.REVIEW
    assert withdrawal.review_reason == "amount 200 USDT at or above the review threshold 200"
    case = withdrawal.aml_case
    assert (case.kind, case.user, case.amount, case.held, case.counterparty) == (
        ItemKind.WITHDRAWAL,
        rich_alice,
        Decimal(200),
        Decimal(201),  # amount + fee, held by the request itself
        withdrawal.address,
    )
    assert balance(rich_alice, "USDT") == Decimal(699) and balance(rich_alice, "USDT", AccountKind.LOCKED) == Decimal(
        201
    )
    tasks.process_withdrawals()  # the pipeline leaves it alone
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.REVIEW

    services.case_release(case_id=case.pk, staff=officer, note="checked the source")
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.APPROVED and withdrawal.decided_by == officer
    tasks.process_withdrawals()
    chain.mine(3)
    tasks.process_withdrawals()
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.CONFIRMED
    assert balance(rich_alice, "USDT") == Decimal(699) and balance(rich_alice, "USDT", AccountKind.LOCKED) == 0
    assert AuditEvent.objects.filter(action="aml.case_released", actor=officer, target_id=str(case.pk)).exists()
    assert_ledger_ok()


def test_a_rejected_withdrawal_gives_amount_and_fee_back(chain, rich_alice, officer):
    limit(RuleName.THRESHOLD, ItemKind.WITHDRAWAL, "USDT", amount=Decimal(200))
    withdrawal = withdraw(rich_alice, "300")
    services.case_reject(case_id=withdrawal.aml_case.pk, staff=officer, reason="unexplained source")
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.failure_reason) == (WithdrawalStatus.REJECTED, "unexplained source")
    assert withdrawal.aml_case.status == CaseStatus.REJECTED
    assert balance(rich_alice, "USDT") == Decimal(900) and balance(rich_alice, "USDT", AccountKind.LOCKED) == 0
    assert_ledger_ok()


def test_too_many_withdrawals_in_the_window_are_flagged_by_velocity(chain, rich_alice):
    limit(RuleName.VELOCITY, ItemKind.WITHDRAWAL, window_minutes=60, count=1)
    assert withdraw(rich_alice, "20", key="a").status == WithdrawalStatus.APPROVED
    second = withdraw(rich_alice, "20", key="b")
    assert second.status == WithdrawalStatus.REVIEW and second.aml_case.rules == ["velocity"]
    assert "2 withdrawals within 1 h, more than 1" in second.review_reason
    assert_ledger_ok()


def test_a_fresh_deposit_withdrawn_to_a_new_address_is_flagged_not_to_a_known_one(chain, network, rich_alice, officer):
    deposit_eth(chain, network, rich_alice, "2")
    known = Account.create().address
    first = withdraw(rich_alice, "0.5", currency="ETH", address=known, key="a")
    assert first.status == WithdrawalStatus.REVIEW and first.aml_case.rules == ["fresh_deposit"]
    assert "to a new address 0 min after deposit:" in first.review_reason
    services.case_release(case_id=first.aml_case.pk, staff=officer)

    again = withdraw(rich_alice, "0.5", currency="ETH", address=known, key="b")
    assert again.status == WithdrawalStatus.APPROVED  # withdrawn to before: not a new address
    elsewhere = withdraw(rich_alice, "0.5", currency="ETH", key="c")
    assert elsewhere.status == WithdrawalStatus.REVIEW and elsewhere.aml_case.rules == ["fresh_deposit"]
    assert_ledger_ok()


def test_a_withdrawal_without_a_recent_deposit_is_not_fresh(chain, rich_alice):
    assert withdraw(rich_alice, "10", key="a").status == WithdrawalStatus.APPROVED  # funded by an adjustment


def test_a_withdrawal_to_a_blocked_address_is_flagged(chain, rich_alice, blocklist_file):
    blocked = Account.create().address
    blocklist_file.write_text(f"# sanctioned\n{blocked.lower()}\n")
    withdrawal = withdraw(rich_alice, "10", address=blocked)
    assert withdrawal.status == WithdrawalStatus.REVIEW
    assert withdrawal.aml_case.hits == [{"rule": "blocklist", "reason": f"counterparty {blocked} is on the block-list"}]


def test_several_rules_hit_together(chain, rich_alice, blocklist_file):
    limit(RuleName.THRESHOLD, ItemKind.WITHDRAWAL, "USDT", amount=Decimal(100))
    blocked = Account.create().address
    blocklist_file.write_text(blocked + "\n")
    withdrawal = withdraw(rich_alice, "150", address=blocked)
    assert withdrawal.aml_case.rules == ["threshold", "blocklist"]
    assert withdrawal.review_reason.startswith("amount 150 USDT at or above the review threshold 100; counterparty ")
