"""Back office for wallets: read-only ledger, currency switches, and the accountant's
manual adjustment (the only way staff move money; nobody edits a balance)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.html import format_html

from kootabase.admin import ReadOnlyAdmin
from kootabase.errors import ServiceError
from wallets import services
from wallets.models import (
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    Adjustment,
    AuditRun,
    Currency,
    JournalEntry,
    LedgerAccount,
    LedgerLeg,
    Transfer,
)

POST_ADJUSTMENT = "wallets.post_adjustment"


@admin.register(Currency)
class CurrencyAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "kind",
        "precision",
        "is_active",
        "deposits_enabled",
        "withdrawals_enabled",
        "trading_enabled",
        "transfers_enabled",
    )
    list_filter = ("kind", "is_active")
    search_fields = ("code", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: Currency | None = None) -> tuple[str, ...]:
        # Balances and legs are kept at the currency's precision: it never changes.
        return ("code", "precision", "created_at") if obj else ("created_at",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "owner", "currency", "kind", "balance")
    list_filter = ("currency", "kind")
    search_fields = ("=id", "user__email")
    list_select_related = ("user", "currency")
    fields = ("user", "currency", "kind", "balance")

    @admin.display(description="Owner")
    def owner(self, account: LedgerAccount) -> str:
        return account.user.email if account.user else "platform"


class LegInline(admin.TabularInline):
    model = LedgerLeg
    fields = ("account", "amount", "balance_after")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "reference", "idempotency_key", "created_at")
    list_filter = ("kind",)
    search_fields = ("=id", "reference", "idempotency_key")
    date_hierarchy = "created_at"
    fields = ("kind", "reference", "idempotency_key", "created_at")
    inlines = [LegInline]


@admin.register(LedgerLeg)
class LedgerLegAdmin(ReadOnlyAdmin):
    list_display = ("id", "entry", "account", "amount", "balance_after")
    search_fields = ("=entry__id", "=account__id", "account__user__email")
    list_select_related = ("entry", "account__currency")
    fields = ("entry", "account", "amount", "balance_after")


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ("id", "sender", "recipient", "currency", "amount", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "sender__email", "recipient__email", "idempotency_key")
    list_select_related = ("sender", "recipient", "currency")
    fields = ("sender", "recipient", "currency", "amount", "idempotency_key", "status", "created_at")


class AdjustmentForm(forms.ModelForm):
    """Posts the adjustment through ``adjustment_post`` once the form is otherwise valid,
    so a refusal (insufficient funds, precision ...) shows as a form error and nothing
    moves; the admin's request transaction holds the posting and its log entry."""

    DIRECTIONS = (("credit", "Credit: add to the user's available balance"), ("debit", "Debit: take from it"))

    direction = forms.ChoiceField(choices=DIRECTIONS)
    amount = forms.DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES)
    request: HttpRequest  # set by AdjustmentAdmin.get_form

    class Meta:
        model = Adjustment
        fields = ("user", "currency", "reason")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        amount, direction = data.get("amount"), data.get("direction")
        if amount is not None and amount <= 0:
            self.add_error("amount", ValidationError("The amount must be greater than zero.", code="min_value"))
        elif amount is not None and direction:
            self.instance.amount = amount if direction == "credit" else amount.copy_negate()
        return data

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        data, staff = self.cleaned_data, self.request.user
        try:
            self.posted = services.adjustment_post(
                user=data["user"],
                currency=data["currency"],
                amount=Decimal(data["amount"]),
                direction=data["direction"],
                reason=data["reason"],
                actor=f"admin:{staff.email}",
                created_by=staff,
            )
        except ServiceError as exc:
            self.add_error(None, ValidationError(exc.message, code=exc.code))


@admin.register(Adjustment)
class AdjustmentAdmin(admin.ModelAdmin):
    """Accountants book fiat deposits and corrections here; who and why are recorded."""

    form = AdjustmentForm
    list_display = ("id", "user", "currency", "amount", "actor", "reason", "created_at")
    list_filter = ("currency",)
    search_fields = ("=id", "user__email", "actor", "reason")
    list_select_related = ("user", "currency")
    autocomplete_fields = ("user",)
    readonly_fields = ("user", "currency", "amount", "reason", "actor", "created_by", "idempotency_key", "created_at")

    def get_fields(self, request: HttpRequest, obj: Adjustment | None = None) -> Any:
        if obj is None:
            return ("user", "currency", "direction", "amount", "reason")
        return self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Adjustment | None = None) -> Any:
        return self.readonly_fields if obj else ()

    def get_form(self, request: HttpRequest, obj: Adjustment | None = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(POST_ADJUSTMENT)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_form(self, request: HttpRequest, form: AdjustmentForm, change: bool) -> Adjustment:
        return form.posted  # already posted, in this request's transaction, by the form

    def save_model(self, request: HttpRequest, obj: Adjustment, form: Any, change: bool) -> None:
        pass

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass


@admin.register(AuditRun)
class AuditRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "started_at", "ok", "violations", "entries_checked", "legs_checked", "accounts_checked")
    list_filter = ("ok",)
    fields = (
        "started_at",
        "finished_at",
        "ok",
        "entries_checked",
        "legs_checked",
        "accounts_checked",
        "violations",
        "findings_pretty",
    )
    readonly_fields = fields

    @admin.display(description="Findings")
    def findings_pretty(self, run: AuditRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(run.findings, indent=2))
