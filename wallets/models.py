"""Currencies and the double-entry ledger.

- ``Currency``: a kind of money and its switches.
- ``LedgerAccount``: one per (owner, currency, kind). Users own an *available* and a
  *locked* account per currency; the platform owns per currency an *external* account
  (the outside world: deposits in, withdrawals out), a *fees* account, an
  *adjustment* account and a *suspense* account (deposits compliance rejected).
  ``balance`` is a cache of the account's legs, written in the same transaction as
  them; a check constraint keeps user balances >= 0.
- ``JournalEntry`` groups ``LedgerLeg`` rows whose amounts sum to zero per currency.
  Entries and legs are append-only: never updated, never deleted.
- ``Transfer``, ``Adjustment``: the business records behind transfer and adjustment
  entries (the entry's ``reference`` names them).
- ``AuditRun``: the stored result of each ledger audit.

All writes go through ``wallets.services``; see docs/ledger.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce

from kootabase.db import model_from_db
from kootabase.fields import CaseSensitiveCharField

# DECIMAL(36, 18): 18 integer digits and 18 decimal places, well under MySQL's cap of 65.
AMOUNT_MAX_DIGITS = 36
AMOUNT_DECIMAL_PLACES = 18
AMOUNT_LIMIT = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES)  # |amount| < 10**18
_QUANTUM = Decimal(1).scaleb(-AMOUNT_DECIMAL_PLACES)
# Python's default decimal context keeps 28 digits, fewer than DECIMAL(36, 18) holds, and
# rounds silently, even on negation. Money arithmetic runs under ``localcontext(MONEY)``:
# wide enough to be exact, and trapping instead of rounding if it ever were not. Negate
# and take absolute values with ``copy_negate()`` / ``copy_abs()``, which never round.
MONEY = Context(prec=60, traps=[InvalidOperation, Inexact, Overflow])


class MoneyField(models.DecimalField):
    """An exact decimal column for amounts and balances, on every backend.

    On MySQL/MariaDB it is ``DECIMAL(36, 18)``. SQLite has no exact decimal type (its
    NUMERIC affinity keeps 15 significant digits), so there the value is stored as
    canonical fixed-point text ("-12.500000000000000000") and read back exactly; the
    sign of canonical text compares correctly against "0", so check constraints on the
    sign hold there too. Sums are done in Python on SQLite (see ``ledger_audit_run``).

    Values with more than 18 decimal places are refused, never rounded.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", AMOUNT_MAX_DIGITS)
        kwargs.setdefault("decimal_places", AMOUNT_DECIMAL_PLACES)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("max_digits") == AMOUNT_MAX_DIGITS:
            del kwargs["max_digits"]
        if kwargs.get("decimal_places") == AMOUNT_DECIMAL_PLACES:
            del kwargs["decimal_places"]
        return name, path, args, kwargs

    def get_internal_type(self) -> str:
        # Not "DecimalField": SQLite's backend would convert it through a float.
        return "MoneyField"

    def db_type(self, connection: Any) -> str:
        if connection.vendor == "sqlite":
            return "text"
        return connection.data_types["DecimalField"] % {
            "max_digits": self.max_digits,
            "decimal_places": self.decimal_places,
        }

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if type(value) is Decimal:  # the ledger's hot path: thousands of legs per matcher batch
            if not value.is_finite():
                raise ValueError(f"{value} is not a ledger amount")
        elif value is None or hasattr(value, "as_sql"):
            return value
        else:
            value = self.to_python(value)
        if value.copy_abs() >= AMOUNT_LIMIT:
            raise ValueError(f"{value} is out of the range of a ledger amount")
        try:
            exact = value.quantize(_QUANTUM, context=MONEY)  # traps Inexact: never rounds
        except Inexact:
            raise ValueError(f"{value} has more than {AMOUNT_DECIMAL_PLACES} decimal places") from None
        if not exact:
            exact = exact.copy_abs()  # no "-0"
        if connection.vendor == "sqlite":
            return format(exact, "f")
        return connection.ops.adapt_decimalfield_value(exact, self.max_digits, self.decimal_places)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        # SQLite: canonical text; an aggregate over it comes back as int or float.
        return Decimal(value) if isinstance(value, str) else Decimal(str(value))


class Currency(models.Model):
    class Kind(models.TextChoices):
        CRYPTO = "crypto", "Crypto"
        FIAT = "fiat", "Fiat"

    code = models.CharField(
        max_length=16,
        unique=True,
        validators=[RegexValidator(r"^[A-Z0-9]{2,16}$", "Codes are 2-16 upper-case letters or digits.")],
        help_text="Ticker, e.g. BTC, USDT, USD.",
    )
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    precision = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(AMOUNT_DECIMAL_PLACES)],
        help_text="Decimal places used for amounts and balances. Fixed once the currency exists.",
    )
    is_active = models.BooleanField(default=True, help_text="Listed; when off nothing can move in it.")
    deposits_enabled = models.BooleanField(default=True)
    withdrawals_enabled = models.BooleanField(default=True)
    trading_enabled = models.BooleanField(default=True)
    transfers_enabled = models.BooleanField(default=True, help_text="Users may pay each other in it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "currencies"
        constraints = [
            models.CheckConstraint(
                condition=Q(precision__lte=AMOUNT_DECIMAL_PLACES), name="wallets_currency_precision_max"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class AccountKind(models.TextChoices):
    AVAILABLE = "available", "Available"
    LOCKED = "locked", "Locked"
    EXTERNAL = "external", "External (world)"
    FEES = "fees", "Fee revenue"
    ADJUSTMENT = "adjustment", "Manual adjustments"
    SUSPENSE = "suspense", "Compliance suspense"


USER_ACCOUNT_KINDS = (AccountKind.AVAILABLE, AccountKind.LOCKED)
SYSTEM_ACCOUNT_KINDS = (AccountKind.EXTERNAL, AccountKind.FEES, AccountKind.ADJUSTMENT, AccountKind.SUSPENSE)


class LedgerAccount(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger_accounts",
        help_text="Empty for the platform's system accounts.",
    )
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="ledger_accounts")
    kind = models.CharField(max_length=16, choices=AccountKind.choices)
    # NULLs never collide in a unique index, so uniqueness is on the owner's id with 0 for
    # the platform: one system account of each kind per currency.
    owner_key = models.GeneratedField(
        expression=Coalesce("user_id", 0), output_field=models.BigIntegerField(), db_persist=True
    )
    balance = MoneyField(default=Decimal(0))

    class Meta:
        ordering = ["id"]
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["owner_key", "currency", "kind"], name="wallets_account_owner_unique"),
            models.CheckConstraint(
                condition=Q(user__isnull=True) | Q(balance__gte=0), name="wallets_user_balance_not_negative"
            ),
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(kind__in=USER_ACCOUNT_KINDS))
                | (Q(user__isnull=True) & Q(kind__in=SYSTEM_ACCOUNT_KINDS)),
                name="wallets_account_kind_matches_owner",
            ),
        ]

    def __str__(self) -> str:
        owner = f"user {self.user_id}" if self.user_id else "platform"
        return f"{owner} {self.currency_id} {self.kind}"

    @classmethod
    def from_db(cls, db: str, field_names: Sequence[str], values: Sequence[Any]) -> LedgerAccount:
        return model_from_db(cls, db, field_names, values)  # a matcher batch reads about fifty

    @property
    def is_user_account(self) -> bool:
        return self.user_id is not None


class EntryKind(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    TRADE = "trade", "Trade"
    FEE = "fee", "Fee"
    TRANSFER = "transfer", "Transfer"
    HOLD = "hold", "Hold"
    RELEASE = "release", "Release"
    ADJUSTMENT = "adjustment", "Adjustment"
    SUSPENSE = "suspense", "To compliance suspense"


class AppendOnlyQuerySet(models.QuerySet):
    """Ledger rows are written once: bulk updates and deletes are refused."""

    def update(self, **kwargs: Any) -> int:
        raise TypeError(f"{self.model.__name__} rows are append-only")

    def delete(self) -> Any:
        raise TypeError(f"{self.model.__name__} rows are append-only")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} rows are append-only")


class JournalEntry(AppendOnlyModel):
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    reference = models.CharField(
        max_length=128, blank=True, db_index=True, help_text='What caused it, e.g. "transfer:42", "trade:7".'
    )
    idempotency_key = CaseSensitiveCharField(max_length=128, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        default_permissions = ("view",)
        verbose_name_plural = "journal entries"

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.reference}"


class LedgerLeg(AppendOnlyModel):
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="legs")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="legs")
    amount = MoneyField(help_text="Signed: positive adds to the account's balance.")
    balance_after = MoneyField()

    class Meta:
        ordering = ["id"]
        default_permissions = ("view",)
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="wallets_leg_amount_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} to account {self.account_id}"


class TransferStatus(models.TextChoices):
    COMPLETED = "completed", "Completed"
    REVIEW = "review", "Held for compliance review"
    REJECTED = "rejected", "Rejected by compliance"


class Transfer(models.Model):
    """A user paying another user inside the platform. ``completed`` at once, or held for
    compliance review when an AML rule flags it (``aml``): the amount stays locked in the
    sender's balance until compliance releases it to the recipient or rejects it."""

    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="transfers_sent")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="transfers_received")
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    amount = MoneyField()
    idempotency_key = CaseSensitiveCharField(max_length=64)
    status = models.CharField(max_length=16, choices=TransferStatus.choices, default=TransferStatus.COMPLETED)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["sender", "idempotency_key"], name="wallets_transfer_idempotency"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="wallets_transfer_amount_positive"),
        ]
        indexes = [
            # The AML velocity rule counts a sender's recent transfers on the transfer path.
            models.Index(fields=["sender", "created_at"], name="wallets_transfer_sender_time"),
        ]

    def __str__(self) -> str:
        return f"transfer:{self.pk}"

    @property
    def reference(self) -> str:
        return f"transfer:{self.pk}"


class Adjustment(models.Model):
    """An operator's manual credit or debit of a user, against the adjustment account."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="adjustments")
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    amount = MoneyField(help_text="Signed: positive credits the user, negative debits.")
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="adjustments_made"
    )
    actor = models.CharField(max_length=254, help_text='Who did it: "admin:<email>" or "command:<login>".')
    idempotency_key = CaseSensitiveCharField(max_length=128, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        default_permissions = ("view",)
        permissions = [("post_adjustment", "Can post a manual credit or debit")]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="wallets_adjustment_amount_not_zero"),
        ]

    def __str__(self) -> str:
        return f"adjustment:{self.pk}"

    @property
    def reference(self) -> str:
        return f"adjustment:{self.pk}"


class AuditRun(models.Model):
    """One run of the ledger audit: when, whether every invariant held, and what did not."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField()
    entries_checked = models.PositiveBigIntegerField(default=0)
    legs_checked = models.PositiveBigIntegerField(default=0)
    accounts_checked = models.PositiveBigIntegerField(default=0)
    violations = models.PositiveBigIntegerField(
        default=0, help_text="How many were found (findings keeps the first 1000)."
    )
    findings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-id"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"audit {self.started_at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'FAILED'}"
