"""AML reads: what the rules look at (a user's recent items, deposits, earlier withdrawal
addresses) and the review queue."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, localcontext

from django.db import models
from django.db.models import QuerySet

from aml.models import Case, CaseStatus, ItemKind
from blockchain.models import Asset, Deposit, DepositStatus, Withdrawal, WithdrawalStatus
from kootabase.statements import Statement
from wallets.models import MONEY, Transfer

# A withdrawal "went to" its address once it was approved: it is paid or on its way.
WITHDRAWAL_SENT = (
    WithdrawalStatus.APPROVED,
    WithdrawalStatus.SIGNING,
    WithdrawalStatus.BROADCAST,
    WithdrawalStatus.CONFIRMED,
)


def _items(*, kind: str, user_id: int, since: datetime, until: datetime) -> QuerySet:
    if kind == ItemKind.DEPOSIT:
        return Deposit.objects.filter(
            user_id=user_id, status=DepositStatus.CONFIRMED, credited_at__gte=since, credited_at__lte=until
        )
    if kind == ItemKind.WITHDRAWAL:
        return Withdrawal.objects.filter(user_id=user_id, created_at__gte=since, created_at__lte=until)
    if kind == ItemKind.TRANSFER:
        return Transfer.objects.filter(sender_id=user_id, created_at__gte=since, created_at__lte=until)
    raise ValueError(f"unknown item kind {kind!r}")


def _window_items(kind: str, *, in_currency: bool, column: str) -> Statement:
    """The ``column`` of the user's items of ``kind`` in a time window (in one currency if
    ``in_currency``), as a statement compiled once: every screened item runs it."""
    model = {ItemKind.DEPOSIT: Deposit, ItemKind.WITHDRAWAL: Withdrawal, ItemKind.TRANSFER: Transfer}[kind]
    time_field = model._meta.get_field("credited_at" if kind == ItemKind.DEPOSIT else "created_at")
    user_field = model._meta.get_field("sender" if kind == ItemKind.TRANSFER else "user")
    currency_field = (Asset if kind == ItemKind.DEPOSIT else model)._meta.get_field("currency")

    def build(user_id: int, since: datetime, until: datetime, currency_id: int | None = None) -> QuerySet:
        items = _items(kind=kind, user_id=user_id, since=since, until=until)
        if in_currency:
            items = (
                items.filter(asset__currency_id=currency_id)
                if kind == ItemKind.DEPOSIT
                else items.filter(currency_id=currency_id)
            )
        return items.values_list(column)

    fields = {"user_id": user_field, "since": time_field, "until": time_field}
    return Statement(build, **fields, **({"currency_id": currency_field} if in_currency else {}))


_WINDOW_STATEMENTS = {
    (kind, in_currency, column): _window_items(kind, in_currency=in_currency, column=column)
    for kind in ItemKind.values
    for in_currency in (False, True)
    for column in ("pk", "amount")
}


def items_in_window(
    *, kind: str, user_id: int, since: datetime, until: datetime, currency_id: int | None, with_total: bool
) -> tuple[int, Decimal | None]:
    """How many items of ``kind`` the user made between ``since`` and ``until`` (both
    included; deposits by the time they were credited), in one currency or all, and, if
    ``with_total``, their amounts added up (exactly, in Python, on every backend).
    One indexed query."""
    if kind not in ItemKind.values:
        raise ValueError(f"unknown item kind {kind!r}")
    in_currency = currency_id is not None
    values = {"user_id": user_id, "since": since, "until": until} | (
        {"currency_id": currency_id} if in_currency else {}
    )
    if not with_total:
        return _WINDOW_STATEMENTS[(kind, in_currency, "pk")].count(**values), None
    amounts = [amount for (amount,) in _WINDOW_STATEMENTS[(kind, in_currency, "amount")].rows(**values)]
    with localcontext(MONEY):
        return len(amounts), sum(amounts, Decimal(0))


def last_deposit_credited(*, user_id: int, since: datetime, until: datetime) -> Deposit | None:
    """The user's latest deposit credited between ``since`` and ``until``."""
    return (
        Deposit.objects.select_related("asset__currency")
        .filter(user_id=user_id, status=DepositStatus.CONFIRMED, credited_at__gte=since, credited_at__lte=until)
        .order_by("-credited_at", "-id")
        .first()
    )


def address_used_before(*, user_id: int, address: str, other_than: int) -> bool:
    """Whether the user withdrew to ``address`` before (a withdrawal other than
    ``other_than`` that was approved, whatever became of it on chain)."""
    return (
        Withdrawal.objects.filter(user_id=user_id, address=address, status__in=WITHDRAWAL_SENT)
        .exclude(pk=other_than)
        .exists()
    )


def case_queue() -> QuerySet[Case]:
    """The review queue: open cases first, then the decided ones; newest first in each."""
    open_first = models.Case(
        models.When(status=CaseStatus.OPEN, then=models.Value(0)),
        default=models.Value(1),
        output_field=models.IntegerField(),
    )
    return (
        Case.objects.select_related("user", "currency", "decided_by", "deposit", "withdrawal", "transfer")
        .annotate(open_rank=open_first)
        .order_by("open_rank", "-id")
    )
