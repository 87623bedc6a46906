from __future__ import annotations

from decimal import Decimal

import pytest

from wallets.models import JournalEntry, LedgerAccount, LedgerLeg
from wallets.tests.factories import CurrencyFactory, UserFactory


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


def ledger_state() -> tuple[int, int, list[tuple[int, Decimal]]]:
    """Everything a rejected request must leave as it was."""
    return (
        JournalEntry.objects.count(),
        LedgerLeg.objects.count(),
        list(LedgerAccount.objects.order_by("pk").values_list("pk", "balance")),
    )


@pytest.fixture
def unchanged_ledger(db):
    """Use as ``with unchanged_ledger(): ...``: asserts no entry, leg or balance changed."""
    from contextlib import contextmanager

    @contextmanager
    def check():
        before = ledger_state()
        yield
        assert ledger_state() == before

    return check
