"""Deposits through the real scanner on the embedded chain: a flagged deposit is credited
and held in the same transaction; release gives it to the user, reject moves it to the
platform's suspense account; the ledger audit stays clean either way."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aml import services
from aml.models import Case, CaseStatus, ItemKind, RuleName
from aml.tests.conftest import assert_ledger_ok, balance, deposit_eth, limit, platform_balance
from audit.models import AuditEvent
from blockchain.chains.embedded_constants import FAUCET
from blockchain.models import Deposit, DepositStatus
from kootabase.errors import Conflict
from wallets.models import AccountKind, EntryKind, JournalEntry


def test_a_clean_deposit_is_credited_and_opens_no_case(chain, network, alice):
    deposit_eth(chain, network, alice, "1.5")
    assert balance(alice, "ETH") == Decimal("1.5") and balance(alice, "ETH", AccountKind.LOCKED) == 0
    assert not Case.objects.exists()
    assert_ledger_ok()


def test_a_deposit_at_the_threshold_is_credited_held_and_released(chain, network, alice, officer):
    limit(RuleName.THRESHOLD, ItemKind.DEPOSIT, "ETH", amount=Decimal(5))
    deposit_eth(chain, network, alice, "6")
    deposit = Deposit.objects.get()
    assert deposit.status == DepositStatus.CONFIRMED
    assert balance(alice, "ETH") == 0 and balance(alice, "ETH", AccountKind.LOCKED) == Decimal(6)
    case = Case.objects.get()
    assert (case.kind, case.deposit, case.held, case.counterparty, case.rules) == (
        ItemKind.DEPOSIT,
        deposit,
        Decimal(6),
        FAUCET,
        ["threshold"],
    )
    assert "amount 6 ETH at or above the review threshold 5" in case.hits[0]["reason"]
    hold = JournalEntry.objects.get(idempotency_key=f"{case.reference}:hold")
    assert (hold.kind, hold.reference) == (EntryKind.HOLD, deposit.reference)
    assert AuditEvent.objects.filter(action="aml.case_opened", target_id=str(case.pk)).exists()
    assert_ledger_ok()

    services.case_release(case_id=case.pk, staff=officer)
    case.refresh_from_db()
    assert case.status == CaseStatus.RELEASED and case.decided_by == officer
    assert balance(alice, "ETH") == Decimal(6) and balance(alice, "ETH", AccountKind.LOCKED) == 0
    assert_ledger_ok()


def test_a_rejected_deposit_moves_to_the_suspense_account(chain, network, alice, officer):
    limit(RuleName.THRESHOLD, ItemKind.DEPOSIT, "ETH", amount=Decimal(5))
    deposit_eth(chain, network, alice, "7")
    case = Case.objects.get()
    services.case_reject(case_id=case.pk, staff=officer, reason="proceeds of a hack")
    case.refresh_from_db()
    assert (case.status, case.decision_reason) == (CaseStatus.REJECTED, "proceeds of a hack")
    assert balance(alice, "ETH") == 0 and balance(alice, "ETH", AccountKind.LOCKED) == 0
    assert platform_balance("ETH", AccountKind.SUSPENSE) == Decimal(7)
    assert platform_balance("ETH", AccountKind.EXTERNAL) == Decimal(-7)  # the deposit itself stays booked
    entry = JournalEntry.objects.get(idempotency_key=f"{case.reference}:suspense")
    assert entry.kind == EntryKind.SUSPENSE and entry.reference == case.deposit.reference
    assert Deposit.objects.get().status == DepositStatus.CONFIRMED
    assert_ledger_ok()


def test_a_deposit_from_a_blocked_address_is_flagged(chain, network, alice, blocklist_file):
    blocklist_file.write_text(f"{FAUCET.lower()}  # the faucet, for this test\n")
    deposit_eth(chain, network, alice, "0.5")
    case = Case.objects.get()
    assert case.hits == [{"rule": "blocklist", "reason": f"counterparty {FAUCET} is on the block-list"}]
    assert balance(alice, "ETH") == 0 and balance(alice, "ETH", AccountKind.LOCKED) == Decimal("0.5")
    assert_ledger_ok()


def test_too_many_deposits_in_a_day_are_flagged_by_velocity(chain, network, alice):
    limit(RuleName.VELOCITY, ItemKind.DEPOSIT, window_minutes=1440, count=1)
    deposit_eth(chain, network, alice, "1")
    assert not Case.objects.exists()
    deposit_eth(chain, network, alice, "2")
    case = Case.objects.get()
    assert case.rules == ["velocity"] and case.held == Decimal(2)
    assert "2 deposits within 1 day(s), more than 1" in case.hits[0]["reason"]
    assert balance(alice, "ETH") == Decimal(1) and balance(alice, "ETH", AccountKind.LOCKED) == Decimal(2)
    assert_ledger_ok()


@pytest.mark.parametrize("decision", ["release", "reject"])
def test_a_decided_case_cannot_be_decided_again(chain, network, alice, officer, decision):
    limit(RuleName.THRESHOLD, ItemKind.DEPOSIT, "ETH", amount=Decimal(1))
    deposit_eth(chain, network, alice, "1")
    case = Case.objects.get()
    services.case_reject(case_id=case.pk, staff=officer, reason="first")
    with pytest.raises(Conflict) as exc:
        if decision == "release":
            services.case_release(case_id=case.pk, staff=officer)
        else:
            services.case_reject(case_id=case.pk, staff=officer, reason="again")
    assert exc.value.code == "case_decided"
    assert platform_balance("ETH", AccountKind.SUSPENSE) == Decimal(1)
    assert_ledger_ok()
