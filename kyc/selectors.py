"""KYC reads: a user's tier, the value of amounts in the reference currency, what a user
has used of their 24 h limits, their status and submissions.

Valuation (``price_in_reference``): the reference currency (``KYC_REFERENCE_CURRENCY``)
counts 1:1; any other currency at the last trade price of the market ``<CODE>-<REF>``, or
1 / the last trade price of ``<REF>-<CODE>``, as the matcher records it in
``marketdata.MarketState``. No such price: ``kyc_price_unavailable``; nothing is ever
guessed. Amounts moved earlier in the window are valued at today's price, so a limit
always compares like with like. Arithmetic is exact (fractions); shown values are
rounded up to the reference currency's precision.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from blockchain.models import Withdrawal, WithdrawalStatus
from kootabase.errors import Conflict, NotFound
from kyc import catalog
from kyc.models import KycProfile, KycSubmission, KycTier, SubmissionStatus
from marketdata.models import MarketState
from orders.pricing import ceil_to
from wallets.models import AMOUNT_DECIMAL_PLACES, Currency, Transfer, TransferStatus

WINDOW = timedelta(hours=24)
# Withdrawals that took nothing out count for no limit.
WITHDRAWALS_NOT_COUNTED = (WithdrawalStatus.REJECTED, WithdrawalStatus.CANCELLED, WithdrawalStatus.FAILED)


def reference_currency() -> str:
    return settings.KYC_REFERENCE_CURRENCY


def tiers_list() -> list[KycTier]:
    return list(KycTier.objects.order_by("level"))


def tier_get(*, level: int) -> KycTier | None:
    return catalog.tier_by_level(level)


def tier_of_user(*, user: User) -> KycTier:
    """The user's tier: their profile's, or tier 0 without a profile (not created by reads)."""
    level = KycProfile.objects.filter(user=user).values_list("tier_id", flat=True).first() or 0
    tier = tier_get(level=level)
    if tier is None:  # tiers are seeded by migration and restored after a flush
        raise RuntimeError(f"KYC tier {level} is missing: run manage.py migrate")
    return tier


# --- Valuation ------------------------------------------------------------------------


def price_in_reference(*, currency: Currency) -> Fraction:
    """What one unit of ``currency`` is worth in the reference currency (see the module)."""
    ref = reference_currency()
    if currency.code == ref:
        return Fraction(1)
    states = MarketState.objects.filter(last_price__isnull=False)
    direct = states.filter(market__base=currency, market__quote__code=ref).values_list("last_price", flat=True)
    price = direct.first()
    if price:
        return Fraction(price)
    inverse = states.filter(market__base__code=ref, market__quote=currency).values_list("last_price", flat=True)
    price = inverse.first()
    if price:
        return 1 / Fraction(price)
    raise Conflict(
        "kyc_price_unavailable",
        f"{currency.code} has no price in {ref} yet (no trade on {currency.code}-{ref} or {ref}-{currency.code}), "
        "so it cannot be counted against your limits now. Try again after the market has traded.",
        details={"currency": currency.code, "reference_currency": ref},
    )


def value_in_reference(*, currency: Currency, amount: Decimal | Fraction) -> Fraction:
    return Fraction(amount) * price_in_reference(currency=currency)


def _value_of_totals(totals: dict[int, Fraction]) -> Fraction:
    currencies = Currency.objects.in_bulk(list(totals))
    return sum(
        (value_in_reference(currency=currencies[currency_id], amount=amount) for currency_id, amount in totals.items()),
        Fraction(0),
    )


def _per_currency(rows: Iterable[tuple[int, Fraction]]) -> dict[int, Fraction]:
    totals: dict[int, Fraction] = defaultdict(Fraction)
    for currency_id, amount in rows:
        totals[currency_id] += amount
    return {currency_id: amount for currency_id, amount in totals.items() if amount}


def withdrawn_24h(*, user: User, now: datetime | None = None) -> Fraction:
    """The user's withdrawals (amount + fee) of the last 24 hours in the reference currency,
    except those rejected, cancelled or failed."""
    since = (now or timezone.now()) - WINDOW
    rows = (
        Withdrawal.objects.filter(user=user, created_at__gte=since)
        .exclude(status__in=WITHDRAWALS_NOT_COUNTED)
        .values_list("currency_id", "amount", "fee")
    )
    return _value_of_totals(_per_currency((c, Fraction(amount) + Fraction(fee)) for c, amount, fee in rows))


def transferred_24h(*, user: User, now: datetime | None = None, exclude_transfer_id: int | None = None) -> Fraction:
    """What the user sent by transfer in the last 24 hours, in the reference currency;
    transfers compliance rejected sent nothing, those held for review count."""
    since = (now or timezone.now()) - WINDOW
    rows = Transfer.objects.filter(sender=user, created_at__gte=since).exclude(status=TransferStatus.REJECTED)
    if exclude_transfer_id is not None:
        rows = rows.exclude(pk=exclude_transfer_id)
    return _value_of_totals(_per_currency((c, Fraction(a)) for c, a in rows.values_list("currency_id", "amount")))


def reference_precision() -> int:
    precision = Currency.objects.filter(code=reference_currency()).values_list("precision", flat=True).first()
    return AMOUNT_DECIMAL_PLACES if precision is None else precision


def shown(value: Fraction) -> Decimal:
    """A value in the reference currency as shown to people: rounded up to its precision."""
    return ceil_to(value, reference_precision())


# --- Status and submissions -----------------------------------------------------------


@dataclass(frozen=True)
class KycStatus:
    tier: KycTier
    next_tier: KycTier | None
    reference_currency: str
    withdrawal_used_24h: Decimal | None  # None: an amount of the window has no price now
    transfer_used_24h: Decimal | None
    pending_submission: KycSubmission | None


def _used_or_none(compute) -> Decimal | None:
    try:
        return shown(compute())
    except Conflict:
        return None


def kyc_status_of(*, user: User) -> KycStatus:
    tier = tier_of_user(user=user)
    return KycStatus(
        tier=tier,
        next_tier=KycTier.objects.filter(level__gt=tier.level).order_by("level").first(),
        reference_currency=reference_currency(),
        withdrawal_used_24h=_used_or_none(lambda: withdrawn_24h(user=user)),
        transfer_used_24h=_used_or_none(lambda: transferred_24h(user=user)),
        pending_submission=submissions_of_user(user=user).filter(status=SubmissionStatus.PENDING).first(),
    )


def submissions_of_user(*, user: User) -> QuerySet[KycSubmission]:
    return KycSubmission.objects.filter(user=user).select_related("tier").prefetch_related("documents")


def submission_get_own(*, user: User, submission_id: int) -> KycSubmission:
    """The user's own submission; another user's id is not found, as a missing one is."""
    submission = submissions_of_user(user=user).filter(pk=submission_id).first()
    if submission is None:
        raise NotFound("not_found", "Not found.")
    return submission


def submissions_pending() -> QuerySet[KycSubmission]:
    """The review queue: pending submissions, oldest first."""
    return KycSubmission.objects.filter(status=SubmissionStatus.PENDING).select_related("user", "tier").order_by("id")
