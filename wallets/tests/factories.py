"""Factories and ledger helpers for every app's tests. Balances are never built by hand:
fund users with ``fund`` (a real adjustment through the services). ``ledger_state`` and
``state_unchanged`` check that a refused request changed nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import factory

from accounts.models import User
from wallets import services
from wallets.models import Adjustment, Currency, JournalEntry, LedgerAccount, LedgerLeg


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Sequence(lambda n: f"User {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return model_class.objects.create_user(*args, password="pw-test-123456", **kwargs)


class CurrencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Currency
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"C{n:03d}")
    name = factory.LazyAttribute(lambda o: f"Coin {o.code}")
    kind = Currency.Kind.CRYPTO
    precision = 8


def fund(user: User, currency: Currency, amount: str | Decimal) -> Adjustment:
    """Credit ``user`` through the adjustment service, as an operator would."""
    return services.adjustment_post(
        user=user,
        currency=currency,
        amount=Decimal(amount),
        direction="credit",
        reason="test funds",
        actor="test",
    )


def ledger_state() -> tuple[int, int, list[tuple[int, Decimal]]]:
    """The ledger as a rejected request must leave it: entries, legs and every balance."""
    return (
        JournalEntry.objects.count(),
        LedgerLeg.objects.count(),
        list(LedgerAccount.objects.order_by("pk").values_list("pk", "balance")),
    )


@contextmanager
def state_unchanged(state: Callable[[], Any]) -> Iterator[None]:
    """``with state_unchanged(world_state): ...`` asserts the block left ``state()`` as it was."""
    before = state()
    yield
    assert state() == before
