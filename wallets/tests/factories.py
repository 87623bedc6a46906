"""Factories for wallet tests. Balances are never built by hand: fund users with
``fund`` (a real adjustment through the services)."""

from __future__ import annotations

from decimal import Decimal

import factory

from accounts.models import User
from wallets import services
from wallets.models import Adjustment, Currency


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
