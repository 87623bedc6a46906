"""The process's memory of ledger account ids (wallets.account_ids): filled only by
commits, checked by every posting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from wallets import account_ids, services
from wallets.models import AccountKind, LedgerAccount
from wallets.tests.factories import UserFactory, fund

D = Decimal


@pytest.mark.django_db(transaction=True)
def test_ids_are_remembered_at_the_commit_and_a_rolled_back_creation_is_not(usdt):
    carol, dave = UserFactory(), UserFactory()
    key = (carol.pk, usdt.pk, AccountKind.AVAILABLE)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.ledger_accounts_ensure(keys=[key])
        assert account_ids.get(key) is None  # not before the commit
        raise RuntimeError("roll back")
    assert account_ids.get(key) is None
    assert not LedgerAccount.objects.filter(user=carol).exists()

    services.ledger_accounts_ensure(keys=[key])
    both = dict(LedgerAccount.objects.filter(user=carol).values_list("kind", "pk"))
    assert both.keys() == {AccountKind.AVAILABLE, AccountKind.LOCKED}  # created together
    assert account_ids.get(key) == both[AccountKind.AVAILABLE]
    assert account_ids.get((carol.pk, usdt.pk, AccountKind.LOCKED)) == both[AccountKind.LOCKED]
    assert account_ids.get((dave.pk, usdt.pk, AccountKind.AVAILABLE)) is None


@pytest.mark.django_db(transaction=True)
def test_a_wrong_remembered_id_is_refused_before_anything_is_written(usdt):
    carol, dave = UserFactory(email="carol@example.com"), UserFactory(email="dave@example.com")
    fund(carol, usdt, "10")
    fund(dave, usdt, "10")
    services.transfer_create(
        sender=carol, recipient_email=dave.email, currency_code="USDT", amount=D(1), idempotency_key="t-1"
    )
    carol_key = (carol.pk, usdt.pk, AccountKind.AVAILABLE)
    dave_available = account_ids.get((dave.pk, usdt.pk, AccountKind.AVAILABLE))
    assert account_ids.get(carol_key) is not None and dave_available is not None
    account_ids._remember([(carol_key, dave_available)])  # as if the database had changed under the process
    before = dict(LedgerAccount.objects.values_list("pk", "balance"))

    with pytest.raises(ValueError, match="unknown ledger accounts"):
        services.transfer_create(
            sender=carol, recipient_email=dave.email, currency_code="USDT", amount=D(1), idempotency_key="t-2"
        )
    assert dict(LedgerAccount.objects.values_list("pk", "balance")) == before
    assert account_ids.get(carol_key) is None  # forgotten: the next request reads the ids again
    services.transfer_create(
        sender=carol, recipient_email=dave.email, currency_code="USDT", amount=D(1), idempotency_key="t-2"
    )
    assert services.ledger_audit_run(store=False).ok
