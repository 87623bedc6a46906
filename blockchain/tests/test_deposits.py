"""Deposits on the in-process EVM, end to end through the scanner."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account

from blockchain.models import BlockRecord, ChainAlert, Deposit, DepositStatus, ScannerState
from blockchain.scanner import scanner_run
from blockchain.services import deposit_address_get_or_create
from blockchain.tests.conftest import assert_ledger_ok, balance, send_eth, send_token
from wallets.models import JournalEntry

pytestmark = pytest.mark.django_db(transaction=False)


def scan(network):
    return scanner_run(network_id=network.pk)


def test_eth_deposit_is_credited_once_after_its_confirmations(chain, network, alice):
    address = deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum").address
    tx_hash = send_eth(chain, address, 1_500_000_000_000_000_000)

    assert scan(network).found == 1
    deposit = Deposit.objects.get()
    assert (deposit.tx_hash, deposit.log_index, deposit.raw_amount) == (tx_hash, -1, 1_500_000_000_000_000_000)
    assert deposit.status == DepositStatus.PENDING and deposit.amount == Decimal("1.5")
    assert balance(alice, "ETH") == 0

    chain.mine(1)  # 2 confirmations of 3
    assert scan(network).credited == 0
    chain.mine(1)
    assert scan(network).credited == 1
    deposit.refresh_from_db()
    assert deposit.status == DepositStatus.CONFIRMED and deposit.journal_entry is not None
    assert deposit.journal_entry.idempotency_key == f"deposit:ethereum:{tx_hash}:-1"
    assert balance(alice, "ETH") == Decimal("1.5")

    chain.mine(5)
    scan(network)
    assert balance(alice, "ETH") == Decimal("1.5")
    assert Deposit.objects.count() == 1
    assert_ledger_ok()


def test_token_deposit_is_credited_once_after_its_confirmations(chain, network, alice):
    address = deposit_address_get_or_create(user=alice, currency_code="USDT", network_name="ethereum").address
    tx_hash = send_token(chain, address, 250_123456)

    scan(network)
    deposit = Deposit.objects.get()
    assert deposit.tx_hash == tx_hash and deposit.log_index >= 0 and deposit.amount == Decimal("250.123456")
    chain.mine(2)
    assert scan(network).credited == 1
    assert balance(alice, "USDT") == Decimal("250.123456")
    chain.mine(3)
    scan(network)
    assert balance(alice, "USDT") == Decimal("250.123456")
    assert_ledger_ok()


def test_reorganisation_before_confirmation_drops_the_deposit_and_credits_nothing(chain, network, alice):
    address = deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum").address
    fork_point = chain.tester.take_snapshot()
    send_eth(chain, address, 10**18)
    scan(network)
    assert Deposit.objects.get().status == DepositStatus.PENDING

    chain.tester.revert_to_snapshot(fork_point)  # the deposit's block is orphaned ...
    chain.mine(4)  # ... by a longer branch without it

    result = scan(network)
    assert result.fork is not None and result.orphaned == 1
    assert Deposit.objects.get().status == DepositStatus.ORPHANED
    chain.mine(5)
    scan(network)
    assert Deposit.objects.get().status == DepositStatus.ORPHANED
    assert balance(alice, "ETH") == 0
    assert not JournalEntry.objects.filter(kind="deposit").exists()
    assert not ChainAlert.objects.exists()  # shallower than the confirmation depth
    assert_ledger_ok()


def test_a_deposit_included_again_in_the_new_branch_is_credited_once(chain, network, alice):
    address = deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum").address
    payer = Account.create()
    send_eth(chain, payer.address, 3 * 10**18)
    fork_point = chain.tester.take_snapshot()
    signed = payer.sign_transaction(
        {
            "type": 2,
            "chainId": chain.w3.eth.chain_id,
            "nonce": 0,
            "to": address,
            "value": 2 * 10**18,
            "gas": 21000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    tx_hash = chain.w3.to_hex(chain.w3.eth.send_raw_transaction(signed.raw_transaction))
    scan(network)
    chain.tester.revert_to_snapshot(fork_point)
    chain.mine(2)
    chain.w3.eth.send_raw_transaction(signed.raw_transaction)  # the same transaction, in another block
    chain.mine(3)
    scan(network)
    deposit = Deposit.objects.get()
    assert deposit.status == DepositStatus.CONFIRMED
    assert deposit.block_hash == chain.w3.to_hex(chain.w3.eth.get_transaction_receipt(tx_hash)["blockHash"])
    assert balance(alice, "ETH") == Decimal(2)
    assert_ledger_ok()


def test_reorganisation_deeper_than_the_confirmation_depth_raises_an_alert(chain, network, alice):
    address = deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum").address
    fork_point = chain.tester.take_snapshot()
    send_eth(chain, address, 10**18)
    chain.mine(3)
    scan(network)
    assert balance(alice, "ETH") == Decimal(1)

    chain.tester.revert_to_snapshot(fork_point)
    chain.mine(6)
    result = scan(network)
    assert result.alerts
    alert = ChainAlert.objects.get()
    assert alert.kind == ChainAlert.Kind.DEEP_REORG and alert.details["depth"] >= network.confirmations
    assert alert.details["credited_deposits"] == [Deposit.objects.get().pk]
    assert balance(alice, "ETH") == Decimal(1)  # the ledger is history: an operator decides
    assert_ledger_ok()


def test_scanning_the_same_blocks_again_credits_nothing_twice(chain, network, alice):
    address = deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum").address
    state = ScannerState.objects.get(network=network)
    start = state.height
    send_eth(chain, address, 3 * 10**18)
    send_token(chain, address, 5_000_000)
    chain.mine(3)
    scan(network)
    assert balance(alice, "ETH") == Decimal(3) and balance(alice, "USDT") == Decimal(5)
    entries = JournalEntry.objects.count()

    # Another run over the very same blocks (a restored backup, an operator's rewind).
    ScannerState.objects.filter(pk=state.pk).update(height=start)
    BlockRecord.objects.all().delete()
    Deposit.objects.update(status=DepositStatus.PENDING)  # as if the first run died before recording the credit
    scan(network)
    assert JournalEntry.objects.count() == entries
    assert balance(alice, "ETH") == Decimal(3) and balance(alice, "USDT") == Decimal(5)
    assert Deposit.objects.filter(status=DepositStatus.CONFIRMED).count() == 2
    assert_ledger_ok()


def test_a_deposit_below_the_minimum_is_recorded_but_not_credited(chain, network, alice, usdt_asset):
    address = deposit_address_get_or_create(user=alice, currency_code="USDT", network_name="ethereum").address
    send_token(chain, address, 500_000)  # 0.5 USDT, the minimum is 1
    chain.mine(3)
    scan(network)
    deposit = Deposit.objects.get()
    assert deposit.status == DepositStatus.BELOW_MINIMUM and deposit.amount == Decimal("0.5")
    assert balance(alice, "USDT") == 0
    assert_ledger_ok()


def test_transfers_to_other_addresses_and_from_the_hot_wallet_are_not_deposits(chain, network, alice):
    from blockchain.hdwallet import hot_wallet

    address = deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum").address
    send_eth(chain, chain.w3.eth.accounts[3], 10**18)
    chain.w3.eth.send_transaction({"from": chain.w3.eth.accounts[0], "to": hot_wallet().address, "value": 10**18})
    signed = hot_wallet().sign_transaction(
        {
            "type": 2,
            "chainId": chain.w3.eth.chain_id,
            "nonce": chain.w3.eth.get_transaction_count(hot_wallet().address),
            "to": address,
            "value": 10**16,
            "gas": 21000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    chain.w3.eth.send_raw_transaction(signed.raw_transaction)  # a gas top-up, not a deposit
    chain.mine(3)
    scan(network)
    assert not Deposit.objects.exists()


def test_the_scanner_advances_in_batches_and_records_its_lag(chain, network, alice, settings):
    deposit_address_get_or_create(user=alice, currency_code="ETH", network_name="ethereum")
    state = ScannerState.objects.get(network=network)
    chain.mine(10)
    result = scanner_run(network_id=network.pk, max_blocks=4)
    state.refresh_from_db()
    assert state.height == result.height and state.lag == result.head - result.height > 0
    while state.lag:
        scanner_run(network_id=network.pk, max_blocks=4)
        state.refresh_from_db()
    assert state.height == chain.w3.eth.block_number
