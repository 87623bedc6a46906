"""The REST API: deposit addresses, deposits, withdrawals and transactions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account

from accounts.tests.helpers import enable_otp, otp_code
from blockchain import tasks
from blockchain.hdwallet import account_at
from blockchain.models import DepositAddress
from blockchain.tests.conftest import assert_ledger_ok, balance, fund_user, send_eth
from wallets.models import AccountKind


def test_the_deposit_address_is_derived_once_and_shown_with_its_explorer_link(chain, network, alice, alice_client):
    first = alice_client.get("/api/v1/wallets/eth/deposit-address?network=ethereum")
    assert first.status_code == 200, first.json()
    body = first.json()
    stored = DepositAddress.objects.get(user=alice)
    assert body["address"] == stored.address == account_at(f"m/44'/60'/0'/0/{alice.pk}").address
    assert body["explorer_url"] == f"https://explorer.example/address/{stored.address}"
    assert alice_client.get("/api/v1/wallets/USDT/deposit-address").json()["address"] == stored.address
    assert DepositAddress.objects.count() == 1


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/v1/wallets/ETH/deposit-address?network=bitcoin", "network_unsupported"),
        ("/api/v1/wallets/NOPE/deposit-address", "unknown_currency"),
    ],
)
def test_bad_deposit_address_requests(chain, network, alice_client, path, code):
    response = alice_client.get(path)
    assert response.status_code == 400 and response.json()["code"] == code
    assert not DepositAddress.objects.exists()


def test_deposits_list_and_transaction_detail_show_confirmations_and_the_explorer_link(
    chain, network, alice, alice_client
):
    address = alice_client.get("/api/v1/wallets/ETH/deposit-address").json()["address"]
    tx_hash = send_eth(chain, address, 10**18)
    tasks.scan_deposits()
    (deposit,) = alice_client.get("/api/v1/deposits").json()["results"]
    assert deposit["status"] == "pending" and deposit["confirmations"] == 1 and deposit["confirmations_required"] == 3
    assert deposit["amount"] == "1.000000000000000000" and deposit["tx_hash"] == tx_hash
    assert deposit["explorer_url"] == f"https://explorer.example/tx/{tx_hash}"
    chain.mine(2)
    tasks.scan_deposits()
    detail = alice_client.get(f"/api/v1/transactions/{deposit['transaction_id']}").json()
    assert detail["status"] == "confirmed" and detail["confirmations"] == 3 and detail["credited_at"]
    assert alice_client.get("/api/v1/transactions/deposit-999999").status_code == 404
    assert alice_client.get("/api/v1/transactions/nonsense").status_code == 404


def test_a_withdrawal_through_the_api_from_request_to_confirmed(chain, network, alice, alice_client):
    enable_otp(alice)
    fund_user(alice, "ETH", "3")
    recipient = Account.create().address
    body = {
        "currency": "ETH",
        "network": "ethereum",
        "address": recipient,
        "amount": "1.5",
        "idempotency_key": "api-1",
        "otp_code": otp_code(alice),
    }
    created = alice_client.post("/api/v1/withdrawals", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["status"] == "requested" and created.json()["fee"] == "0.001000000000000000"
    again = alice_client.post("/api/v1/withdrawals", {**body, "otp_code": otp_code(alice)}, format="json")
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]

    tasks.process_withdrawals()
    chain.mine(3)
    tasks.process_withdrawals()
    tasks.scan_deposits()
    (listed,) = alice_client.get("/api/v1/withdrawals").json()["results"]
    assert listed["status"] == "confirmed" and listed["confirmations"] >= 3 and listed["tx_hash"]
    assert listed["explorer_url"] == f"https://explorer.example/tx/{listed['tx_hash']}"
    assert alice_client.get(f"/api/v1/transactions/withdrawal-{listed['id']}").json()["status"] == "confirmed"
    assert chain.w3.eth.get_balance(recipient) == 15 * 10**17
    assert balance(alice, "ETH") == Decimal("1.499")
    assert_ledger_ok()


def test_cancel_through_the_api(chain, network, alice, alice_client, unchanged):
    enable_otp(alice)
    fund_user(alice, "ETH", "3")
    body = {
        "currency": "ETH",
        "address": Account.create().address,
        "amount": "1",
        "idempotency_key": "api-2",
        "otp_code": otp_code(alice),
    }
    withdrawal = alice_client.post("/api/v1/withdrawals", body, format="json").json()
    cancelled = alice_client.delete(f"/api/v1/withdrawals/{withdrawal['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert balance(alice, "ETH", AccountKind.LOCKED) == 0
    again = alice_client.delete(f"/api/v1/withdrawals/{withdrawal['id']}")
    assert again.status_code == 409 and again.json()["code"] == "withdrawal_not_cancellable"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"address": "0xnothex"}, 400, "address_invalid"),
        ({"amount": "1.5e3"}, 400, "amount_invalid"),
        ({"amount": "0.0000000000000000001"}, 400, "amount_precision"),
        ({"amount": "100"}, 400, "insufficient_funds"),
        ({"currency": "BTC"}, 400, "network_unsupported"),
        ({"otp_code": ""}, 403, "otp_required"),
        ({"amont": "1"}, 400, "amont_unknown_field"),
    ],
)
def test_bad_withdrawal_requests_through_the_api_change_nothing(
    chain, network, alice, alice_client, unchanged, change, status, code
):
    from wallets.models import Currency

    Currency.objects.get_or_create(code="BTC", defaults={"name": "Bitcoin", "kind": "crypto", "precision": 8})
    enable_otp(alice)
    fund_user(alice, "ETH", "3")
    body = {
        "currency": "ETH",
        "address": Account.create().address,
        "amount": "1",
        "idempotency_key": "api-3",
        "otp_code": otp_code(alice),
        **change,
    }
    with unchanged():
        response = alice_client.post("/api/v1/withdrawals", body, format="json")
    assert response.status_code == status, response.json()
    assert response.json()["code"] in (code, "unknown_field"), response.json()


def test_reads_need_authentication(chain, network, api_client):
    for path in ("/api/v1/deposits", "/api/v1/withdrawals", "/api/v1/wallets/ETH/deposit-address"):
        assert api_client.get(path).status_code == 401
