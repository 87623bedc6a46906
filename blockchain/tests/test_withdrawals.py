"""Withdrawals on the in-process EVM, end to end through the workers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account

from aml.models import RuleParameter
from aml.services import case_reject, case_release
from audit.models import AuditEvent
from blockchain import broadcaster, tasks
from blockchain.chains.embedded import demo_token
from blockchain.hdwallet import hot_wallet
from blockchain.models import ChainAlert, OutgoingTx, Withdrawal, WithdrawalStatus
from blockchain.services import (
    deposit_address_get_or_create,
    withdrawal_cancel,
)
from blockchain.tests.conftest import assert_ledger_ok, balance, request_withdrawal
from kootabase.errors import ServiceError
from wallets.models import AccountKind, LedgerAccount


def external_balance(code: str) -> Decimal:
    return LedgerAccount.objects.get(user=None, currency__code=code, kind=AccountKind.EXTERNAL).balance


def test_an_eth_withdrawal_goes_from_request_to_confirmed_with_the_ledger_matching(chain, rich_alice):
    recipient = Account.create().address
    hot_nonce = chain.w3.eth.get_transaction_count(hot_wallet().address)
    withdrawal, created = request_withdrawal(rich_alice, amount="2", address=recipient)
    assert created and withdrawal.status == WithdrawalStatus.REQUESTED and withdrawal.fee == Decimal("0.001")
    assert balance(rich_alice, "ETH") == Decimal("7.999")
    assert balance(rich_alice, "ETH", AccountKind.LOCKED) == Decimal("2.001")
    assert AuditEvent.objects.filter(action="withdrawal.requested", target_id=str(withdrawal.pk)).exists()

    tasks.process_withdrawals()  # screened, approved, signed, sent (mined at once), 1 confirmation
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.BROADCAST and withdrawal.tx.status == OutgoingTx.Status.MINED
    assert chain.w3.eth.get_balance(recipient) == 2 * 10**18
    chain.mine(2)
    tasks.process_withdrawals()
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.CONFIRMED
    assert withdrawal.tx.status == OutgoingTx.Status.CONFIRMED and withdrawal.tx.block_number is not None
    assert balance(rich_alice, "ETH") == Decimal("7.999")
    assert balance(rich_alice, "ETH", AccountKind.LOCKED) == 0
    assert external_balance("ETH") == Decimal(2)
    assert LedgerAccount.objects.get(user=None, currency__code="ETH", kind=AccountKind.FEES).balance == Decimal("0.001")
    assert chain.w3.eth.get_transaction_count(hot_wallet().address) == hot_nonce + 1
    tasks.process_withdrawals()
    assert balance(rich_alice, "ETH", AccountKind.LOCKED) == 0
    assert_ledger_ok()


def test_a_token_withdrawal_is_confirmed_on_chain(chain, rich_alice):
    recipient = Account.create().address
    withdrawal, _ = request_withdrawal(rich_alice, currency="USDT", amount="1234.5", address=recipient)
    tasks.process_withdrawals()
    chain.mine(3)
    tasks.process_withdrawals()
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.CONFIRMED
    assert demo_token(chain.w3).functions.balanceOf(recipient).call() == 1234_500000
    assert balance(rich_alice, "USDT") == Decimal("3764.5")
    assert_ledger_ok()


def test_the_broadcaster_killed_after_sending_but_before_recording_resumes_without_a_second_send(chain, rich_alice):
    recipient = Account.create().address
    hot_nonce = chain.w3.eth.get_transaction_count(hot_wallet().address)
    withdrawal, _ = request_withdrawal(rich_alice, amount="1", address=recipient)
    tasks.withdrawal_screen(withdrawal.pk)
    signed = broadcaster.withdrawal_sign(withdrawal_id=withdrawal.pk)
    assert signed.status == WithdrawalStatus.SIGNING
    # The process sent the stored bytes, then died before recording anything.
    chain.w3.eth.send_raw_transaction(signed.tx.signed_raw)

    assert broadcaster.withdrawal_sign(withdrawal_id=withdrawal.pk).tx_id == signed.tx_id  # never signed twice
    tasks.process_withdrawals()
    chain.mine(3)
    tasks.process_withdrawals()
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.CONFIRMED
    assert OutgoingTx.objects.count() == 1 and withdrawal.tx.tx_hash == signed.tx.tx_hash
    assert chain.w3.eth.get_transaction_count(hot_wallet().address) == hot_nonce + 1
    assert chain.w3.eth.get_balance(recipient) == 10**18
    assert_ledger_ok()


def test_the_broadcaster_killed_after_signing_but_before_sending_sends_the_same_bytes(chain, rich_alice):
    recipient = Account.create().address
    withdrawal, _ = request_withdrawal(rich_alice, amount="1", address=recipient)
    tasks.withdrawal_screen(withdrawal.pk)
    signed = broadcaster.withdrawal_sign(withdrawal_id=withdrawal.pk)
    assert signed.tx.status == OutgoingTx.Status.SIGNED  # stored, not sent
    assert chain.w3.eth.get_balance(recipient) == 0
    tasks.process_withdrawals()
    chain.mine(3)
    tasks.process_withdrawals()
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.CONFIRMED and withdrawal.tx.tx_hash == signed.tx.tx_hash
    assert chain.w3.eth.get_balance(recipient) == 10**18
    assert_ledger_ok()


def test_a_requested_withdrawal_can_be_cancelled_and_its_hold_is_released(chain, rich_alice):
    withdrawal, _ = request_withdrawal(rich_alice, amount="1")
    withdrawal_cancel(user=rich_alice, withdrawal_id=withdrawal.pk)
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.CANCELLED
    assert balance(rich_alice, "ETH") == Decimal(10) and balance(rich_alice, "ETH", AccountKind.LOCKED) == 0
    tasks.process_withdrawals()
    assert not OutgoingTx.objects.exists()

    second, _ = request_withdrawal(rich_alice, amount="1", key="w-2")
    tasks.withdrawal_screen(second.pk)
    with pytest.raises(ServiceError) as exc:
        withdrawal_cancel(user=rich_alice, withdrawal_id=second.pk)
    assert exc.value.code == "withdrawal_not_cancellable" and exc.value.status == 409
    assert_ledger_ok()


def test_a_large_withdrawal_waits_for_review_and_can_be_rejected_or_approved(chain, rich_alice, usdt_asset, admin_user):
    # The review threshold is the AML threshold rule's; compliance decides through the case.
    RuleParameter.objects.create(rule="threshold", kind="withdrawal", currency=usdt_asset.currency, amount=1000)
    flagged, _ = request_withdrawal(rich_alice, currency="USDT", amount="1500")
    tasks.process_withdrawals()
    flagged.refresh_from_db()
    assert flagged.status == WithdrawalStatus.REVIEW and "threshold" in flagged.review_reason
    case_reject(case_id=flagged.aml_case.pk, staff=admin_user, reason="unusual")
    assert balance(rich_alice, "USDT") == Decimal(5000)

    second, _ = request_withdrawal(rich_alice, currency="USDT", amount="1500", key="w-2")
    tasks.process_withdrawals()
    second.refresh_from_db()
    case_release(case_id=second.aml_case.pk, staff=admin_user)
    tasks.process_withdrawals()
    chain.mine(3)
    tasks.process_withdrawals()
    second.refresh_from_db()
    assert second.status == WithdrawalStatus.CONFIRMED and second.decided_by == admin_user
    assert_ledger_ok()


def test_the_same_idempotency_key_returns_the_first_request_and_holds_nothing_more(chain, rich_alice):
    first, created = request_withdrawal(rich_alice, amount="1", key="same")
    again, created_again = request_withdrawal(rich_alice, amount="1", key="same", address=first.address)
    assert created and not created_again and again.pk == first.pk
    assert balance(rich_alice, "ETH", AccountKind.LOCKED) == Decimal("1.001")
    with pytest.raises(ServiceError) as exc:
        request_withdrawal(rich_alice, amount="3", key="same")
    assert exc.value.code == "idempotency_conflict"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"address": "0x123"}, "address_invalid"),
        ({"address": "0x52908400098527886E0F7030069857D2E4169EE7".replace("E7", "e7")}, "address_checksum"),
        ({"network": "bitcoin"}, "network_unsupported"),
        ({"currency": "USD"}, "network_unsupported"),
        ({"currency": "NOPE"}, "unknown_currency"),
        ({"amount": "0.001"}, "amount_below_minimum"),
        ({"amount": "0.0000000000000000001"}, "amount_precision"),
        ({"amount": "9.9995"}, "insufficient_funds"),
        ({"code": ""}, "otp_required"),
        ({"code": "000000"}, "otp_invalid"),
    ],
)
def test_bad_withdrawals_are_refused_with_a_code_and_change_nothing(chain, rich_alice, unchanged, kwargs, code):
    from wallets.models import Currency

    Currency.objects.get_or_create(code="USD", defaults={"name": "US Dollar", "kind": "fiat", "precision": 2})
    with unchanged(), pytest.raises(ServiceError) as exc:
        request_withdrawal(rich_alice, **kwargs)
    assert exc.value.code == code


def test_contract_and_internal_addresses_are_refused(chain, rich_alice, unchanged, usdt_asset, alice):
    own = deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum").address
    for address, code in (
        (usdt_asset.contract_address, "address_is_contract"),
        (own, "address_is_internal"),
        (hot_wallet().address, "address_is_internal"),
    ):
        with unchanged(), pytest.raises(ServiceError) as exc:
            request_withdrawal(rich_alice, address=address)
        assert exc.value.code == code


def test_disabled_withdrawals_are_refused(chain, rich_alice, eth_asset, unchanged):
    eth_asset.withdrawals_enabled = False
    eth_asset.save()
    with unchanged(), pytest.raises(ServiceError) as exc:
        request_withdrawal(rich_alice)
    assert exc.value.code == "currency_disabled"


def test_the_daily_limit_is_enforced(chain, rich_alice, eth_asset, unchanged):
    eth_asset.daily_withdrawal_limit = Decimal("3")
    eth_asset.save()
    request_withdrawal(rich_alice, amount="2")
    with unchanged(), pytest.raises(ServiceError) as exc:
        request_withdrawal(rich_alice, amount="1", key="w-2")
    assert exc.value.code == "withdrawal_limit_exceeded"
    assert Withdrawal.objects.count() == 1


def test_a_stuck_withdrawal_is_bumped_with_the_same_nonce_and_paid_once(chain, rich_alice, settings):
    settings.BLOCKCHAIN_FEE_BUMP_AFTER = 0  # every unmined transaction counts as stuck
    recipient = Account.create().address
    hot_nonce = chain.w3.eth.get_transaction_count(hot_wallet().address)
    withdrawal, _ = request_withdrawal(rich_alice, amount="1", address=recipient)
    chain.tester.disable_auto_mine_transactions()
    try:
        tasks.process_withdrawals()  # screened, approved, signed, sent: pending, not mined
        withdrawal.refresh_from_db()
        first = withdrawal.tx
        assert first.status == OutgoingTx.Status.SENT and chain.w3.eth.get_balance(recipient) == 0

        tasks.process_withdrawals()  # still unmined: re-signed with the same nonce and higher fees
        withdrawal.refresh_from_db()
        bumped = withdrawal.tx
        assert bumped.pk == first.pk and bumped.nonce == first.nonce
        assert bumped.tx_hash != first.tx_hash
        assert bumped.previous_hashes == [*first.previous_hashes, first.tx_hash]  # every earlier hash is kept
        assert bumped.max_fee_per_gas > first.max_fee_per_gas
        assert bumped.priority_fee_per_gas > first.priority_fee_per_gas
    finally:
        chain.tester.enable_auto_mine_transactions()
    chain.mine(3)
    tasks.process_withdrawals()
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.CONFIRMED
    assert withdrawal.tx.mined_hash in {bumped.tx_hash, *bumped.previous_hashes}
    assert chain.w3.eth.get_balance(recipient) == 10**18  # paid once, whichever of the two was mined
    assert chain.w3.eth.get_transaction_count(hot_wallet().address) == hot_nonce + 1
    assert OutgoingTx.objects.count() == 1
    assert_ledger_ok()


def test_a_withdrawal_reverted_on_chain_fails_and_its_hold_is_released(chain, rich_alice):
    # The hot wallet's tokens are gone (moved away out of band): the token transfer reverts.
    hot = hot_wallet()
    token = demo_token(chain.w3)
    held = token.functions.balanceOf(hot.address).call()
    drain = token.functions.transfer(Account.create().address, held).build_transaction(
        {"from": hot.address, "nonce": chain.w3.eth.get_transaction_count(hot.address), "gas": 100_000}
    )
    chain.w3.eth.send_raw_transaction(hot.sign_transaction(drain).raw_transaction)
    assert token.functions.balanceOf(hot.address).call() == 0

    recipient = Account.create().address
    withdrawal, _ = request_withdrawal(rich_alice, currency="USDT", amount="100", address=recipient)
    assert balance(rich_alice, "USDT", AccountKind.LOCKED) > 0
    tasks.process_withdrawals()
    chain.mine(3)
    tasks.process_withdrawals()
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.FAILED
    assert withdrawal.tx.status == OutgoingTx.Status.FAILED
    assert token.functions.balanceOf(recipient).call() == 0
    assert balance(rich_alice, "USDT") == Decimal(5000)  # amount and fee back
    assert balance(rich_alice, "USDT", AccountKind.LOCKED) == 0
    assert ChainAlert.objects.filter(kind=ChainAlert.Kind.TX_FAILED, details__withdrawal=withdrawal.pk).exists()
    assert_ledger_ok()
