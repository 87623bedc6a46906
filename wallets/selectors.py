"""Wallet and ledger reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from django.db.models import Q, QuerySet

from accounts.models import User
from wallets.models import MONEY, AccountKind, AuditRun, Currency, LedgerAccount, LedgerLeg


@dataclass(frozen=True, slots=True)
class Wallet:
    """A user's balances in one currency."""

    currency: Currency
    available: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        with localcontext(MONEY):
            return self.available + self.locked


def currency_list(*, active_only: bool = True) -> QuerySet[Currency]:
    currencies = Currency.objects.all()
    return currencies.filter(is_active=True) if active_only else currencies


def currency_get(*, code: str) -> Currency | None:
    return Currency.objects.filter(code=str(code).strip().upper()).first()


def _wallets(user: User, currencies: list[Currency]) -> list[Wallet]:
    balances = {
        (currency_id, kind): balance
        for currency_id, kind, balance in LedgerAccount.objects.filter(
            user=user, currency__in=currencies, kind__in=(AccountKind.AVAILABLE, AccountKind.LOCKED)
        ).values_list("currency_id", "kind", "balance")
    }
    zero = Decimal(0)
    return [
        Wallet(
            currency=currency,
            available=balances.get((currency.pk, AccountKind.AVAILABLE), zero),
            locked=balances.get((currency.pk, AccountKind.LOCKED), zero),
        )
        for currency in currencies
    ]


def wallet_list(*, user: User) -> list[Wallet]:
    """One wallet per listed currency, plus any delisted currency the user still holds."""
    currencies = list(Currency.objects.filter(Q(is_active=True) | Q(ledger_accounts__user=user)).distinct())
    return _wallets(user, currencies)


def wallet_get(*, user: User, currency: Currency) -> Wallet:
    return _wallets(user, [currency])[0]


def ledger_leg_list(
    *,
    user: User,
    currency: Currency | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[LedgerLeg]:
    """The user's own ledger lines (both their available and locked accounts), newest first."""
    legs = LedgerLeg.objects.filter(account__user=user).select_related("entry", "account__currency")
    if currency is not None:
        legs = legs.filter(account__currency=currency)
    if kind:
        legs = legs.filter(entry__kind=kind)
    if since is not None:
        legs = legs.filter(entry__created_at__gte=since)
    if until is not None:
        legs = legs.filter(entry__created_at__lt=until)
    return legs.order_by("-id")


def audit_run_latest() -> AuditRun | None:
    return AuditRun.objects.order_by("-id").first()
