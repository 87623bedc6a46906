from __future__ import annotations

from functools import partial

import pytest

from wallets.tests.factories import CurrencyFactory, UserFactory, ledger_state, state_unchanged


@pytest.fixture
def usdt(db):
    return CurrencyFactory(code="USDT", name="Tether USD", precision=6)


@pytest.fixture
def btc(db):
    return CurrencyFactory(code="BTC", name="Bitcoin", precision=8)


@pytest.fixture
def alice(db):
    return UserFactory(email="alice@example.com")


@pytest.fixture
def bob(db):
    return UserFactory(email="bob@example.com")


@pytest.fixture
def unchanged_ledger(db):
    """Use as ``with unchanged_ledger(): ...``: asserts no entry, leg or balance changed."""
    return partial(state_unchanged, ledger_state)
