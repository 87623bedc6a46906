"""AML test fixtures: the embedded chain and its network (blockchain's fixtures), funded
users, staff of each role, a block-list file of the test's own, and rule helpers."""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from accounts.roles import ADMIN, COMPLIANCE, SUPPORT
from aml.models import Case, RuleParameter
from audit.models import AuditEvent
from blockchain.models import Withdrawal
from blockchain.scanner import scanner_run
from blockchain.services import deposit_address_get_or_create
from blockchain.tests.conftest import (  # noqa: F401 - fixtures
    alice,
    assert_ledger_ok,
    balance,
    chain,
    eth_asset,
    network,
    send_eth,
    usdt_asset,
)
from wallets.models import Currency, JournalEntry, LedgerAccount, Transfer
from wallets.tests.factories import UserFactory, state_unchanged


@pytest.fixture(autouse=True)
def blocklist_file(settings, tmp_path) -> Path:
    """The block-list of this test (empty until a test writes to it)."""
    path = tmp_path / "blocklist.txt"
    path.write_text("# nobody yet\n")
    settings.AML_BLOCKLIST_FILE = str(path)
    return path


@pytest.fixture
def bob(db):
    return UserFactory(email="bob@example.com")


def member(role: str):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def officer(db):
    return member(COMPLIANCE)


@pytest.fixture
def support(db):
    return member(SUPPORT)


@pytest.fixture
def platform_admin(db):
    return member(ADMIN)


def limit(rule: str, kind: str = "", currency: str | None = None, **params) -> RuleParameter:
    """Add an enabled parameter row (on top of the seeded defaults)."""
    return RuleParameter.objects.create(
        rule=rule, kind=kind, currency=Currency.objects.get(code=currency) if currency else None, **params
    )


def platform_balance(code: str, kind: str) -> Decimal:
    account = LedgerAccount.objects.filter(user=None, currency__code=code, kind=kind).first()
    return account.balance if account else Decimal(0)


def deposit_eth(evm, eth_network, user, ether: str) -> None:
    """Send ``ether`` to the user's deposit address and let the scanner credit it (3 confirmations)."""
    address = deposit_address_get_or_create(user=user, currency_code="ETH", network_name="ethereum").address
    send_eth(evm, address, int(Decimal(ether) * 10**18))
    evm.mine(2)
    assert scanner_run(network_id=eth_network.pk).credited == 1


def world_state() -> tuple:
    """Everything a refused request or decision must leave as it was."""
    return (
        JournalEntry.objects.count(),
        list(LedgerAccount.objects.order_by("pk").values_list("pk", "balance")),
        list(Case.objects.order_by("pk").values_list("pk", "status", "decided_at")),
        list(Transfer.objects.order_by("pk").values_list("pk", "status")),
        list(Withdrawal.objects.order_by("pk").values_list("pk", "status")),
        AuditEvent.objects.count(),
    )


def nothing_changed() -> AbstractContextManager[None]:
    return state_unchanged(world_state)
