"""AML rule parameters and review cases.

- ``RuleParameter``: one limit of one rule, edited by compliance in the back office. The
  rules themselves are code (``aml.rules``); what they flag is these rows. A rule with no
  enabled row for an item's kind and currency is off for that item. Migration ``0002``
  seeds the defaults. The block-list itself is a file (``settings.AML_BLOCKLIST_FILE``).
- ``Case``: one item (deposit, withdrawal or transfer) that a rule flagged: which rules hit
  and why, what is held, and compliance's decision. One case per item at most.

All writes go through ``aml.services``; see docs/security.md, "AML".
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from wallets.models import Currency, MoneyField


class ItemKind(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    TRANSFER = "transfer", "Transfer"


class RuleName(models.TextChoices):
    THRESHOLD = "threshold", "Threshold: amount at or above a limit"
    VELOCITY = "velocity", "Velocity: too many or too much in a window"
    FRESH_DEPOSIT = "fresh_deposit", "Fresh deposit withdrawn to a new address"
    BLOCKLIST = "blocklist", "Counterparty or user on the block-list"


class RuleParameter(models.Model):
    """One limit of one rule, for one kind of item (or all) and one currency (or all).

    - ``threshold``: ``amount`` (with its ``currency``): flag an item of this amount or more.
    - ``velocity``: ``window_minutes`` and ``count`` and/or ``amount``: flag when the user's
      items of the kind in the window (this one included) are more than ``count``, or add
      up to more than ``amount`` (of ``currency``). Without a currency, ``count`` counts
      items of every currency.
    - ``fresh_deposit`` (withdrawals): ``window_minutes``: flag a withdrawal requested within
      this time after a credited deposit, to an address the user never withdrew to before.
    - ``blocklist``: no parameter; the row switches the rule on for its kind.
    """

    rule = models.CharField(max_length=16, choices=RuleName.choices)
    kind = models.CharField(
        max_length=16, choices=ItemKind.choices, blank=True, help_text="Empty: every kind the rule applies to."
    )
    currency = models.ForeignKey(
        Currency,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty: every currency. A row with an amount needs its currency.",
    )
    amount = MoneyField(
        null=True,
        blank=True,
        help_text="threshold: flag at or above this amount. velocity: flag when the window's items add up to more.",
    )
    count = models.PositiveIntegerField(
        null=True, blank=True, help_text="velocity: flag more than this many items in the window."
    )
    window_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="velocity: the window. fresh_deposit: how long after a deposit a withdrawal is fresh.",
    )
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True, help_text="Why this limit is what it is.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["rule", "kind", "currency", "id"]
        verbose_name = "rule parameter"
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | (Q(amount__gt=0) & Q(currency__isnull=False)),
                name="aml_ruleparameter_amount_in_a_currency",
                violation_error_message="An amount must be greater than zero and needs a currency.",
            ),
            models.CheckConstraint(
                condition=Q(window_minutes__isnull=True) | Q(window_minutes__gte=1),
                name="aml_ruleparameter_window_positive",
                violation_error_message="The window is at least one minute.",
            ),
            models.CheckConstraint(
                condition=~Q(rule="threshold") | Q(amount__isnull=False),
                name="aml_ruleparameter_threshold_has_amount",
                violation_error_message="A threshold needs an amount and a currency.",
            ),
            models.CheckConstraint(
                condition=~Q(rule="velocity")
                | (Q(window_minutes__isnull=False) & (Q(count__isnull=False) | Q(amount__isnull=False))),
                name="aml_ruleparameter_velocity_has_limits",
                violation_error_message="A velocity limit needs a window and a count, an amount or both.",
            ),
            models.CheckConstraint(
                condition=~Q(rule="fresh_deposit") | (Q(window_minutes__isnull=False) & Q(kind__in=["", "withdrawal"])),
                name="aml_ruleparameter_fresh_deposit_window",
                violation_error_message="The fresh-deposit rule applies to withdrawals and needs a window.",
            ),
        ]
        indexes = [models.Index(fields=["kind", "enabled"], name="aml_ruleparameter_kind")]

    def __str__(self) -> str:
        scope = " ".join(part for part in (self.kind, self.currency.code if self.currency_id else "") if part)
        return f"{self.rule} {scope or 'all'}"


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open: funds held"
    RELEASED = "released", "Released"
    REJECTED = "rejected", "Rejected"


class Case(models.Model):
    """A flagged item in the compliance review queue; its funds stay held while it is open."""

    kind = models.CharField(max_length=16, choices=ItemKind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="aml_cases")
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    amount = MoneyField(help_text="The item's amount.")
    held = MoneyField(help_text="What is locked in the user's balance while the case is open.")
    counterparty = models.CharField(
        max_length=254, blank=True, help_text="The address paid from or to, or the other user's email."
    )
    hits = models.JSONField(default=list, help_text='The rules that flagged it: [{"rule": ..., "reason": ...}].')
    deposit = models.OneToOneField(
        "blockchain.Deposit", on_delete=models.PROTECT, null=True, blank=True, related_name="aml_case"
    )
    withdrawal = models.OneToOneField(
        "blockchain.Withdrawal", on_delete=models.PROTECT, null=True, blank=True, related_name="aml_case"
    )
    transfer = models.OneToOneField(
        "wallets.Transfer", on_delete=models.PROTECT, null=True, blank=True, related_name="aml_case"
    )
    status = models.CharField(max_length=16, choices=CaseStatus.choices, default=CaseStatus.OPEN)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "review case"
        default_permissions = ("view",)
        permissions = [("decide_case", "Can release or reject AML review cases")]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="deposit", deposit__isnull=False, withdrawal__isnull=True, transfer__isnull=True)
                    | Q(kind="withdrawal", deposit__isnull=True, withdrawal__isnull=False, transfer__isnull=True)
                    | Q(kind="transfer", deposit__isnull=True, withdrawal__isnull=True, transfer__isnull=False)
                ),
                name="aml_case_one_item_of_its_kind",
            ),
            models.CheckConstraint(condition=Q(held__gt=0), name="aml_case_held_positive"),
            models.CheckConstraint(
                condition=Q(status="open", decided_at__isnull=True) | (~Q(status="open") & Q(decided_at__isnull=False)),
                name="aml_case_decided_when_closed",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "id"], name="aml_case_status"),
            models.Index(fields=["user", "-id"], name="aml_case_user"),
        ]

    def __str__(self) -> str:
        return f"aml-case:{self.pk}"

    @property
    def reference(self) -> str:
        return f"aml-case:{self.pk}"

    @property
    def item(self) -> models.Model:
        return self.deposit or self.withdrawal or self.transfer  # type: ignore[return-value]

    @property
    def rules(self) -> list[str]:
        return [hit["rule"] for hit in self.hits]
