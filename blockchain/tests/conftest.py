from __future__ import annotations

from decimal import Decimal
from functools import partial

import pytest
from eth_account import Account
from rest_framework.test import APIClient

from accounts.tests.helpers import enable_otp, otp_code
from blockchain import demo
from blockchain.chains.embedded import EmbeddedChain, demo_token, embedded_chain
from blockchain.chains.embedded_constants import FAUCET
from blockchain.models import Asset, Deposit, Network, OutgoingTx, Withdrawal
from blockchain.services import withdrawal_request
from kyc.tests.helpers import kyc_verified
from wallets.models import AccountKind, Currency, LedgerAccount
from wallets.services import ledger_audit_run
from wallets.tests.factories import UserFactory, fund, ledger_state, state_unchanged


@pytest.fixture
def chain() -> EmbeddedChain:
    """The in-process EVM, back at its state right after boot (token deployed, hot wallet funded)."""
    chain = embedded_chain()
    chain.reset()
    return chain


@pytest.fixture
def network(db, chain) -> Network:
    demo.seed()
    network = Network.objects.get(name=demo.NETWORK)
    network.confirmations = 3
    network.explorer_tx_url = "https://explorer.example/tx/{tx_hash}"
    network.explorer_address_url = "https://explorer.example/address/{address}"
    network.save()
    return network


@pytest.fixture
def eth_asset(network) -> Asset:
    return Asset.objects.select_related("currency", "network").get(network=network, currency__code="ETH")


@pytest.fixture
def usdt_asset(network) -> Asset:
    return Asset.objects.select_related("currency", "network").get(network=network, currency__code="USDT")


@pytest.fixture
def alice(db):
    user = UserFactory(email="alice@example.com")
    kyc_verified(user)  # ETH has no price here: only a tier without limits withdraws it
    return user


@pytest.fixture
def alice_client(alice) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def rich_alice(alice, network):
    """``alice`` with 2FA on, 10 ETH and 5000 USDT."""
    enable_otp(alice)
    fund_user(alice, "ETH", "10")
    fund_user(alice, "USDT", "5000")
    return alice


def request_withdrawal(user, *, currency="ETH", amount="2", address=None, key="w-1", network="ethereum", code=None):
    """``withdrawal_request`` of ``amount`` to a fresh address (or ``address``) with a current
    2FA code (or ``code``); its result (the withdrawal, whether it was created)."""
    return withdrawal_request(
        user=user,
        currency_code=currency,
        network_name=network,
        address=address or Account.create().address,
        amount=Decimal(amount),
        idempotency_key=key,
        otp_code=code if code is not None else otp_code(user),
    )


def send_eth(chain: EmbeddedChain, to: str, wei: int) -> str:
    return chain.w3.to_hex(chain.w3.eth.send_transaction({"from": FAUCET, "to": to, "value": wei}))


def send_token(chain: EmbeddedChain, to: str, units: int) -> str:
    return chain.w3.to_hex(demo_token(chain.w3).functions.transfer(to, units).transact({"from": FAUCET}))


def balance(user, code: str, kind: str = AccountKind.AVAILABLE) -> Decimal:
    account = LedgerAccount.objects.filter(user=user, currency__code=code, kind=kind).first()
    return account.balance if account else Decimal(0)


def assert_ledger_ok() -> None:
    run = ledger_audit_run(store=False)
    assert run.ok, run.findings


def fund_user(user, code: str, amount: str) -> None:
    fund(user, Currency.objects.get(code=code), amount)


def world_state() -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        *ledger_state(),
        Withdrawal.objects.count(),
        OutgoingTx.objects.count(),
        Deposit.objects.count(),
    )


@pytest.fixture
def unchanged():
    return partial(state_unchanged, world_state)
