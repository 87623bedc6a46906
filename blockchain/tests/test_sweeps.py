"""Sweeping deposits into the hot wallet on the in-process EVM."""

from __future__ import annotations

from decimal import Decimal

from blockchain import tasks
from blockchain.chains.embedded import demo_token
from blockchain.hdwallet import hot_wallet
from blockchain.models import Deposit, OutgoingTx, Sweep
from blockchain.services import deposit_address_get_or_create
from blockchain.sweeper import sweeper_run
from blockchain.tests.conftest import assert_ledger_ok, balance, send_eth, send_token


def deposit_and_credit(chain, network, user, *, eth: int = 0, tokens: int = 0) -> str:
    address = deposit_address_get_or_create(user=user, currency_code="ETH", network_name="ethereum").address
    if eth:
        send_eth(chain, address, eth)
    if tokens:
        send_token(chain, address, tokens)
    chain.mine(3)
    tasks.scan_deposits()
    return address


def test_a_token_sweep_tops_up_gas_waits_for_it_then_moves_the_tokens(chain, network, alice):
    address = deposit_and_credit(chain, network, alice, tokens=700_000000)
    hot = hot_wallet().address
    hot_tokens = demo_token(chain.w3).functions.balanceOf(hot).call()

    (sweep,) = sweeper_run(network_id=network.pk)
    assert sweep.status == Sweep.Status.TOPUP and sweep.topup_tx is not None and sweep.sweep_tx is None
    assert chain.w3.eth.get_balance(address) > 0
    (sweep,) = sweeper_run(network_id=network.pk)  # the top-up has 1 confirmation of 3: wait
    assert sweep.status == Sweep.Status.TOPUP and sweep.sweep_tx is None
    chain.mine(2)
    (sweep,) = sweeper_run(network_id=network.pk)
    assert sweep.status == Sweep.Status.SWEEPING and sweep.sweep_tx is not None
    chain.mine(2)
    (sweep,) = sweeper_run(network_id=network.pk)
    assert sweep.status == Sweep.Status.DONE
    assert demo_token(chain.w3).functions.balanceOf(hot).call() == hot_tokens + 700_000000
    assert demo_token(chain.w3).functions.balanceOf(address).call() == 0
    assert Deposit.objects.get().sweep == sweep
    assert sweeper_run(network_id=network.pk) == []  # nothing left: nothing opened again
    assert OutgoingTx.objects.count() == 2
    tasks.scan_deposits()
    assert balance(alice, "USDT") == Decimal(700)  # neither the top-up nor the sweep is a deposit
    assert_ledger_ok()


def test_an_eth_sweep_moves_the_whole_balance_less_the_exact_gas(chain, network, alice):
    address = deposit_and_credit(chain, network, alice, eth=5 * 10**18)
    hot = hot_wallet().address
    before = chain.w3.eth.get_balance(hot)
    (sweep,) = sweeper_run(network_id=network.pk)
    assert sweep.status == Sweep.Status.SWEEPING and sweep.sweep_tx is not None
    chain.mine(3)
    (sweep,) = sweeper_run(network_id=network.pk)
    assert sweep.status == Sweep.Status.DONE
    assert chain.w3.eth.get_balance(address) == 0
    assert chain.w3.eth.get_balance(hot) == before + sweep.raw_amount
    assert 0 < 5 * 10**18 - sweep.raw_amount < 10**16
    assert_ledger_ok()
