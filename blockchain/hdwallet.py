"""The platform's keys: deposit addresses derived from one HD wallet, and the hot wallet.

Deposit addresses follow BIP-44 from a BIP-39 mnemonic (``settings.HD_WALLET_MNEMONIC``),
with the user's id as the address index: ``m/44'/60'/0'/0/<user id>`` on EVM networks, so
a user has the same address on every EVM chain and no index is ever handed out twice.
The hot wallet's key is ``settings.HOT_WALLET_PRIVATE_KEY``. Neither secret is ever
written to the database; only the derivation path is. eth-account does the BIP-32
arithmetic (``eth_account.hdaccount``).
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.signers.local import LocalAccount

# BIP-44 coin types by network kind (SLIP-44): every EVM chain uses Ethereum's 60.
COIN_TYPES = {"evm": 60}


def deposit_path(*, network_kind: str, index: int) -> str:
    if not 0 <= index < 2**31:
        raise ValueError(f"address index {index} is out of BIP-32's non-hardened range")
    return f"m/44'/{COIN_TYPES[network_kind]}'/0'/0/{index}"


@lru_cache(maxsize=4)
def _seed(mnemonic: str) -> bytes:
    return seed_from_mnemonic(mnemonic, passphrase="")


@lru_cache(maxsize=4096)
def _account(mnemonic: str, path: str) -> LocalAccount:
    return Account.from_key(key_from_seed(_seed(mnemonic), path))


def account_at(path: str) -> LocalAccount:
    """The key pair at ``path`` of the configured HD wallet."""
    return _account(settings.HD_WALLET_MNEMONIC, path)


def hot_wallet() -> LocalAccount:
    """The hot wallet: withdrawals leave from it, sweeps and gas top-ups meet in it."""
    return _hot_wallet(settings.HOT_WALLET_PRIVATE_KEY)


@lru_cache(maxsize=4)
def _hot_wallet(key: str) -> LocalAccount:
    return Account.from_key(key)
