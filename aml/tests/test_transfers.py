"""Transfers through ``transfer_create``: a flagged one holds the sender's amount and waits
in review; release pays the recipient, reject pays the sender back; a clean one moves at
once with at most two screening queries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from aml import services
from aml.models import Case, CaseStatus, ItemKind, RuleName
from aml.tests.conftest import assert_ledger_ok, balance, limit, nothing_changed
from audit.models import AuditEvent
from kootabase.errors import ServiceError
from wallets.models import AccountKind, Currency, Transfer, TransferStatus
from wallets.services import transfer_create
from wallets.tests.factories import CurrencyFactory, fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def usdt(db) -> Currency:
    return CurrencyFactory(code="USDT", precision=6)


@pytest.fixture
def funded(alice, bob, usdt):
    fund(alice, usdt, "500")
    return alice, bob


def send(sender, recipient, amount: str, key: str = "t-1") -> Transfer:
    return transfer_create(
        sender=sender,
        recipient_email=recipient.email,
        currency_code="USDT",
        amount=Decimal(amount),
        idempotency_key=key,
    )


def test_a_clean_transfer_moves_at_once_and_opens_no_case(funded):
    alice, bob = funded
    transfer = send(alice, bob, "40")
    assert transfer.status == TransferStatus.COMPLETED
    assert (balance(alice, "USDT"), balance(bob, "USDT")) == (Decimal(460), Decimal(40))
    assert not Case.objects.exists()
    assert_ledger_ok()


def test_screening_a_clean_transfer_costs_one_indexed_query(funded, usdt):
    """The transfer is a benchmarked hot path: the parameters come from the process's copy,
    then one count per velocity limit."""
    alice, bob = funded
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(1000))  # a limit that does not hit
    transfer = send(alice, bob, "2")
    with CaptureQueriesContext(connection) as ctx:  # the screening that transfer went through, again
        assert services.transfer_screen(transfer=transfer, sender=alice, recipient=bob, currency=usdt) is None
    assert len(ctx.captured_queries) == 1, ctx.captured_queries
    (velocity,) = (q["sql"] for q in ctx.captured_queries)
    assert "wallets_transfer" in velocity and "COUNT(*)" in velocity  # on the (sender, created_at) index


def test_a_rule_saved_after_the_parameters_were_loaded_applies_to_the_next_transfer(funded):
    alice, bob = funded
    assert send(alice, bob, "40").status == TransferStatus.COMPLETED  # the parameters are loaded now
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(30))
    assert send(alice, bob, "40", key="second").status == TransferStatus.REVIEW
    assert Case.objects.count() == 1
    assert_ledger_ok()


def test_a_transfer_at_the_threshold_is_held_for_review_then_released_to_the_recipient(funded, officer):
    alice, bob = funded
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(100))
    transfer = send(alice, bob, "100")
    assert transfer.status == TransferStatus.REVIEW
    assert balance(alice, "USDT") == Decimal(400) and balance(alice, "USDT", AccountKind.LOCKED) == Decimal(100)
    assert balance(bob, "USDT") == 0
    case = Case.objects.get()
    assert (case.kind, case.transfer, case.user, case.held, case.counterparty, case.rules) == (
        ItemKind.TRANSFER,
        transfer,
        alice,
        Decimal(100),
        "bob@example.com",
        ["threshold"],
    )
    opened = AuditEvent.objects.get(action="aml.case_opened")
    assert (
        opened.actor is None
        and opened.target_id == str(case.pk)
        and opened.details["item"] == f"transfer:{transfer.pk}"
    )
    assert_ledger_ok()

    assert send(alice, bob, "100").pk == transfer.pk  # the same key again: nothing more held
    assert balance(alice, "USDT", AccountKind.LOCKED) == Decimal(100) and Case.objects.count() == 1

    services.case_release(case_id=case.pk, staff=officer, note="known customer")
    transfer.refresh_from_db()
    case.refresh_from_db()
    assert transfer.status == TransferStatus.COMPLETED
    assert (case.status, case.decided_by, case.decision_reason) == (CaseStatus.RELEASED, officer, "known customer")
    assert balance(alice, "USDT") == Decimal(400) and balance(alice, "USDT", AccountKind.LOCKED) == 0
    assert balance(bob, "USDT") == Decimal(100)
    released = AuditEvent.objects.get(action="aml.case_released")
    assert released.actor == officer and released.target_id == str(case.pk)
    assert_ledger_ok()


def test_a_rejected_transfer_goes_back_to_the_sender(funded, officer):
    alice, bob = funded
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(100))
    transfer = send(alice, bob, "250")
    services.case_reject(case_id=transfer.aml_case.pk, staff=officer, reason="structuring")
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.REJECTED
    assert balance(alice, "USDT") == Decimal(500) and balance(alice, "USDT", AccountKind.LOCKED) == 0
    assert balance(bob, "USDT") == 0
    rejected = AuditEvent.objects.get(action="aml.case_rejected")
    assert rejected.actor == officer and rejected.details["reason"] == "structuring"
    assert_ledger_ok()


def test_too_many_transfers_in_the_window_are_flagged_by_velocity(funded):
    alice, bob = funded
    limit(RuleName.VELOCITY, ItemKind.TRANSFER, window_minutes=60, count=2)
    assert [send(alice, bob, "1", key=f"t-{n}").status for n in range(3)] == ["completed", "completed", "review"]
    case = Case.objects.get()
    assert case.rules == ["velocity"] and "3 transfers within 1 h, more than 2" in case.hits[0]["reason"]
    assert balance(bob, "USDT") == Decimal(2) and balance(alice, "USDT", AccountKind.LOCKED) == Decimal(1)
    assert_ledger_ok()


def test_too_much_in_the_window_is_flagged_by_velocity(funded):
    alice, bob = funded
    limit(RuleName.VELOCITY, ItemKind.TRANSFER, "USDT", window_minutes=1440, amount=Decimal(100))
    assert send(alice, bob, "60", key="a").status == TransferStatus.COMPLETED
    flagged = send(alice, bob, "50", key="b")
    assert flagged.status == TransferStatus.REVIEW
    assert "of 110 USDT within 1 day(s), more than 100" in flagged.aml_case.hits[0]["reason"]


def test_a_recipient_or_a_sender_on_the_blocklist_is_flagged(funded, blocklist_file):
    alice, bob = funded
    blocklist_file.write_text("BOB@example.com  # a mule\n")
    first = send(alice, bob, "5", key="a")
    assert first.status == TransferStatus.REVIEW
    assert first.aml_case.hits == [{"rule": "blocklist", "reason": "counterparty bob@example.com is on the block-list"}]

    fund(bob, Currency.objects.get(code="USDT"), "5")
    blocklist_file.write_text("alice@example.com\n")
    back = send(bob, alice, "5", key="b")
    assert back.aml_case.hits[0]["reason"] == "counterparty alice@example.com is on the block-list"
    assert_ledger_ok()


def test_a_flagged_transfer_without_the_funds_is_refused_and_leaves_nothing(funded):
    alice, bob = funded
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(100))
    with nothing_changed(), pytest.raises(ServiceError) as exc:
        send(alice, bob, "600")
    assert exc.value.code == "insufficient_funds"
    assert not Transfer.objects.exists() and not Case.objects.exists()


def test_the_api_shows_the_transfer_in_review(funded):
    alice, bob = funded
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(100))
    client = APIClient()
    client.force_authenticate(alice)
    body = {"recipient": bob.email, "currency": "USDT", "amount": "150", "idempotency_key": "api-1"}
    response = client.post("/api/v1/transfers", body, format="json")
    assert response.status_code == 201
    assert (response.json()["status"], response.json()["amount"]) == ("review", "150.000000")
    clean = client.post("/api/v1/transfers", {**body, "amount": "1", "idempotency_key": "api-2"}, format="json")
    assert clean.json()["status"] == "completed"
