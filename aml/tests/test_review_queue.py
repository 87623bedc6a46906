"""Compliance's review queue: who may release, reject or freeze, the reason a rejection
needs, the audit trail, and the back-office pages and controls."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from accounts.tests.helpers import admin_login
from aml import services
from aml.models import Case, CaseStatus, ItemKind, RuleName, RuleParameter
from aml.tests.conftest import assert_ledger_ok, balance, limit, nothing_changed
from audit.models import AuditEvent
from kootabase.errors import ServiceError
from wallets.models import AccountKind, Currency, TransferStatus
from wallets.services import transfer_create
from wallets.tests.factories import CurrencyFactory, fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def usdt(db) -> Currency:
    return CurrencyFactory(code="USDT", precision=6)


@pytest.fixture
def case(alice, bob, usdt) -> Case:
    """An open case: alice's transfer of 150 USDT to bob, over a threshold of 100."""
    fund(alice, usdt, "500")
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(100))
    transfer = transfer_create(
        sender=alice, recipient_email=bob.email, currency_code="USDT", amount=Decimal(150), idempotency_key="t-1"
    )
    return transfer.aml_case


@pytest.mark.parametrize("decide", ["release", "reject"])
def test_only_compliance_decides(case, support, platform_admin, decide):
    for staff in (support, platform_admin):
        with nothing_changed(), pytest.raises(ServiceError) as exc:
            if decide == "release":
                services.case_release(case_id=case.pk, staff=staff)
            else:
                services.case_reject(case_id=case.pk, staff=staff, reason="no")
        assert (exc.value.code, exc.value.status) == ("permission_denied", 403)


def test_a_rejection_needs_a_reason(case, officer):
    with nothing_changed(), pytest.raises(ServiceError) as exc:
        services.case_reject(case_id=case.pk, staff=officer, reason="   ")
    assert exc.value.code == "reason_required"


def test_an_unknown_case_is_not_found(officer, db):
    with pytest.raises(ServiceError) as exc:
        services.case_release(case_id=999, staff=officer)
    assert (exc.value.code, exc.value.status) == ("not_found", 404)


def test_compliance_freezes_the_account_and_it_moves_nothing_more(case, officer, alice, bob):
    services.case_freeze(case_id=case.pk, staff=officer, reason="mule account")
    alice.refresh_from_db()
    assert alice.is_frozen and alice.frozen_reason == f"{case.reference}: mule account"
    frozen = AuditEvent.objects.get(action="aml.account_frozen")
    assert frozen.actor == officer and frozen.target_id == str(case.pk) and frozen.details["reason"] == "mule account"
    assert AuditEvent.objects.filter(action="accounts.user_frozen", target_id=str(alice.pk)).exists()
    case.refresh_from_db()
    assert case.status == CaseStatus.OPEN  # still waiting for release or reject

    with pytest.raises(ServiceError) as exc:
        transfer_create(
            sender=alice, recipient_email=bob.email, currency_code="USDT", amount=Decimal(1), idempotency_key="t-2"
        )
    assert exc.value.code == "account_frozen"

    with nothing_changed():  # frozen already: nothing more recorded
        services.case_freeze(case_id=case.pk, staff=officer, reason="again")

    services.case_reject(case_id=case.pk, staff=officer, reason="mule account")  # the hold still comes back
    assert balance(alice, "USDT") == Decimal(500) and balance(alice, "USDT", AccountKind.LOCKED) == 0
    assert_ledger_ok()


def test_freezing_needs_the_freeze_permission_and_a_reason(case, support, officer, alice):
    with nothing_changed(), pytest.raises(ServiceError) as exc:
        services.case_freeze(case_id=case.pk, staff=support, reason="x")
    assert exc.value.code == "permission_denied"
    with nothing_changed(), pytest.raises(ServiceError) as exc:
        services.case_freeze(case_id=case.pk, staff=officer, reason="")
    assert exc.value.code == "reason_required"
    alice.refresh_from_db()
    assert not alice.is_frozen


# --- The back office ---------------------------------------------------------------------


def test_the_queue_lists_open_cases_first_with_the_rules_the_item_and_the_user(case, officer, alice, bob, usdt):
    fund(bob, usdt, "500")
    later = transfer_create(
        sender=bob, recipient_email=alice.email, currency_code="USDT", amount=Decimal(200), idempotency_key="t-9"
    ).aml_case
    services.case_release(case_id=later.pk, staff=officer)
    client = admin_login(Client(), officer)
    page = client.get("/admin/aml/case/")
    assert page.status_code == 200
    rows = list(page.context["cl"].result_list)
    assert [(c.pk, c.status) for c in rows] == [(case.pk, "open"), (later.pk, "released")]
    html = page.content.decode()
    assert "threshold" in html and "alice@example.com" in html and f"transfer:{case.transfer_id}" in html

    detail = client.get(f"/admin/aml/case/{case.pk}/change/").content.decode()
    assert "review threshold 100" in detail
    for control in ("release", "reject", "freeze"):
        assert f"/admin/aml/case/{case.pk}/control/{control}/" in detail
    assert "/control/release/" not in client.get(f"/admin/aml/case/{later.pk}/change/").content.decode()


def test_reject_in_the_back_office_needs_a_reason_then_is_done_and_audited(case, officer, alice):
    client = admin_login(Client(), officer)
    url = f"/admin/aml/case/{case.pk}/control/reject/"
    assert "The transfer is rejected" in client.get(url).content.decode()
    with nothing_changed():
        refused = client.post(url, {"reason": ""})
    assert refused.status_code == 200 and refused.context["form"].errors
    done = client.post(url, {"reason": "structuring"})
    assert done.status_code == 302
    case.refresh_from_db()
    assert (case.status, case.decided_by, case.transfer.status) == (CaseStatus.REJECTED, officer, "rejected")
    event = AuditEvent.objects.get(action="aml.case_rejected")
    assert event.ip is not None and event.actor == officer
    assert balance(alice, "USDT") == Decimal(500)


def test_release_and_freeze_in_the_back_office(case, officer, alice, bob):
    client = admin_login(Client(), officer)
    assert client.post(f"/admin/aml/case/{case.pk}/control/freeze/", {"reason": "checking"}).status_code == 302
    alice.refresh_from_db()
    assert alice.is_frozen
    assert client.post(f"/admin/aml/case/{case.pk}/control/release/", {"reason": "documents fine"}).status_code == 302
    case.refresh_from_db()
    assert case.status == CaseStatus.RELEASED and case.transfer.status == TransferStatus.COMPLETED
    assert balance(bob, "USDT") == Decimal(150)
    assert_ledger_ok()


@pytest.mark.parametrize("control", ["release", "reject", "freeze"])
def test_staff_without_the_permission_get_no_control(case, support, platform_admin, control):
    support_client = admin_login(Client(), support)
    assert support_client.get("/admin/aml/case/").status_code == 403
    with nothing_changed():
        assert support_client.post(f"/admin/aml/case/{case.pk}/control/{control}/", {"reason": "x"}).status_code == 403
    admin_client = admin_login(Client(), platform_admin)
    assert admin_client.get(f"/admin/aml/case/{case.pk}/change/").status_code == 200  # reads the queue
    if control != "freeze":  # the admin role freezes accounts (accounts.freeze_user), it does not decide cases
        with nothing_changed():
            assert (
                admin_client.post(f"/admin/aml/case/{case.pk}/control/{control}/", {"reason": "x"}).status_code == 403
            )


def test_compliance_edits_the_rule_parameters_and_the_change_is_audited(officer, usdt):
    client = admin_login(Client(), officer)
    response = client.post(
        "/admin/aml/ruleparameter/add/",
        {"rule": "threshold", "kind": "deposit", "currency": usdt.pk, "amount": "2500", "enabled": "on", "note": ""},
    )
    assert response.status_code == 302
    row = RuleParameter.objects.get(rule="threshold", kind="deposit")
    assert row.amount == Decimal(2500) and row.currency == usdt
    assert AuditEvent.objects.filter(action="admin.add", target_id=str(row.pk), actor=officer).exists()

    refused = client.post(
        "/admin/aml/ruleparameter/add/", {"rule": "threshold", "kind": "deposit", "amount": "10", "enabled": "on"}
    )
    assert refused.status_code == 200 and "needs a currency" in refused.content.decode()
