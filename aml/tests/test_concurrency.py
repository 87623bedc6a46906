"""Two compliance officers deciding the same case at the same moment: the case row's lock
lets one decision through; the other finds it decided and moves nothing."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from accounts.roles import COMPLIANCE
from aml import services
from aml.models import Case, CaseStatus, ItemKind, RuleName
from aml.tests.conftest import assert_ledger_ok, balance, limit, member
from kootabase.errors import ServiceError
from wallets.models import AccountKind, TransferStatus
from wallets.services import transfer_create
from wallets.tests.factories import CurrencyFactory, UserFactory, fund


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_two_officers_deciding_one_case_at_once_decide_it_once():
    usdt = CurrencyFactory(code="USDT", precision=6)
    alice, bob = UserFactory(), UserFactory()
    fund(alice, usdt, "500")
    limit(RuleName.THRESHOLD, ItemKind.TRANSFER, "USDT", amount=Decimal(100))
    transfer = transfer_create(
        sender=alice, recipient_email=bob.email, currency_code="USDT", amount=Decimal(150), idempotency_key="t-1"
    )
    case = Case.objects.get(transfer=transfer)
    officers = [member(COMPLIANCE), member(COMPLIANCE)]
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def decide(decision: str, officer) -> None:
        try:
            start.wait()
            if decision == "release":
                services.case_release(case_id=case.pk, staff=officer)
            else:
                services.case_reject(case_id=case.pk, staff=officer, reason="at the same time")
            outcomes[decision] = "done"
        except ServiceError as exc:
            outcomes[decision] = exc.code
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=args) for args in zip(("release", "reject"), officers, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes.values()) == ["case_decided", "done"]
    case.refresh_from_db()
    transfer.refresh_from_db()
    won = "release" if outcomes["release"] == "done" else "reject"
    assert case.status == (CaseStatus.RELEASED if won == "release" else CaseStatus.REJECTED)
    assert transfer.status == (TransferStatus.COMPLETED if won == "release" else TransferStatus.REJECTED)
    assert balance(alice, "USDT", AccountKind.LOCKED) == 0
    assert balance(alice, "USDT") + balance(bob, "USDT") == Decimal(500)
    assert balance(bob, "USDT") == (Decimal(150) if won == "release" else 0)
    assert_ledger_ok()
