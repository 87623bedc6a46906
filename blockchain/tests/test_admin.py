"""Back office: withdrawals decided through their AML case (permission-gated), reserves, scanner lag."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import Group
from django.test import Client
from eth_account import Account

from accounts.roles import COMPLIANCE, SUPPORT
from accounts.tests.helpers import admin_login, enable_otp, otp_code
from aml.models import RuleParameter
from blockchain import tasks
from blockchain.models import Withdrawal, WithdrawalStatus
from blockchain.services import withdrawal_request
from blockchain.tests.conftest import balance, fund_user
from wallets.tests.factories import UserFactory


def staff(role: str):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return admin_login(Client(), user), user


def flagged_withdrawal(alice, usdt_asset) -> Withdrawal:
    RuleParameter.objects.create(rule="threshold", kind="withdrawal", currency=usdt_asset.currency, amount=100)
    enable_otp(alice)
    fund_user(alice, "USDT", "1000")
    withdrawal, _ = withdrawal_request(
        user=alice,
        currency_code="USDT",
        network_name="ethereum",
        address=Account.create().address,
        amount=Decimal(500),
        idempotency_key="adm-1",
        otp_code=otp_code(alice),
    )
    tasks.withdrawal_screen(withdrawal.pk)
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.REVIEW
    return withdrawal


def test_compliance_rejects_a_withdrawal_in_review_and_the_funds_come_back(chain, network, alice, usdt_asset):
    withdrawal = flagged_withdrawal(alice, usdt_asset)
    client, officer = staff(COMPLIANCE)
    assert str(withdrawal.aml_case) in client.get("/admin/blockchain/withdrawal/").content.decode()
    response = client.post(
        f"/admin/aml/case/{withdrawal.aml_case.pk}/control/reject/", {"reason": "unusual"}, follow=True
    )
    assert response.status_code == 200
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.REJECTED and withdrawal.decided_by == officer
    assert balance(alice, "USDT") == Decimal(1000)


def test_support_sees_withdrawals_but_cannot_decide(chain, network, alice, usdt_asset):
    withdrawal = flagged_withdrawal(alice, usdt_asset)
    client, _ = staff(SUPPORT)
    assert client.get("/admin/blockchain/withdrawal/").status_code == 200
    response = client.post(f"/admin/aml/case/{withdrawal.aml_case.pk}/control/release/", {"reason": "fine"})
    assert response.status_code == 403
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.REVIEW


def test_reserves_and_scanner_lag_pages(chain, network, admin_client):
    tasks.scan_deposits()
    reserves = admin_client.get("/admin/blockchain/asset/reserves/")
    assert reserves.status_code == 200
    assert b"USDT" in reserves.content and b"1000000" in reserves.content
    assert admin_client.get("/admin/blockchain/network/").status_code == 200
    assert admin_client.get("/admin/blockchain/scannerstate/").status_code == 200
