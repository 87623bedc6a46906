"""Back office for AML: the compliance review queue and the rules' parameters.

The queue lists open cases first, with the rules that hit, the item and the user. A case's
page shows why each rule flagged it and carries the controls — release, reject (reason
required), freeze the account — each with a confirmation page and a reason, run by
``aml.services`` (permission check, audit event). Cases are never edited by hand.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts.admin import FreezeForm
from aml import selectors, services
from aml.models import Case, CaseStatus, RuleParameter
from kootabase.admin import ObjectControl, ObjectControlsAdmin, ReadOnlyAdmin, ReasonForm

_RELEASE = {
    "deposit": "The held amount goes back to the user's available balance.",
    "withdrawal": "The withdrawal is approved and sent; its amount and fee stay held until it is paid.",
    "transfer": "The held amount is paid to the recipient: the transfer completes.",
}
_REJECT = {
    "deposit": "The held amount leaves the user's balance for the platform's compliance suspense account, where "
    "it waits for what compliance does next (a return to the sender, a report).",
    "withdrawal": "The withdrawal is rejected and its amount and fee go back to the user's available balance.",
    "transfer": "The transfer is rejected and the held amount goes back to the sender's available balance.",
}


def _release(request: HttpRequest, case: Case, data: dict[str, Any]) -> str:
    services.case_release(case_id=case.pk, staff=request.user, note=data["reason"], request=request)
    return f"{case} released."


def _reject(request: HttpRequest, case: Case, data: dict[str, Any]) -> str:
    services.case_reject(case_id=case.pk, staff=request.user, reason=data["reason"], request=request)
    return f"{case} rejected."


def _freeze(request: HttpRequest, case: Case, data: dict[str, Any]) -> str:
    services.case_freeze(
        case_id=case.pk,
        staff=request.user,
        reason=data["reason"],
        cancel_orders=data["cancel_orders"],
        request=request,
    )
    return f"{case.user.email} is frozen."


def _open(case: Case, viewer: Any) -> bool:
    return case.status == CaseStatus.OPEN


_CONTROLS = (
    ObjectControl(
        "release", "Release", services.DECIDE_CASE, lambda case: _RELEASE[case.kind], ReasonForm, _open, _release
    ),
    ObjectControl(
        "reject", "Reject", services.DECIDE_CASE, lambda case: _REJECT[case.kind], ReasonForm, _open, _reject
    ),
    ObjectControl(
        "freeze",
        "Freeze the account",
        services.FREEZE_USER,
        lambda case: (
            f"{case.user.email} logs in and looks, but places no order and makes no swap, transfer or "
            "withdrawal. The case stays as it is."
        ),
        FreezeForm,
        lambda case, viewer: not case.user.is_frozen,
        _freeze,
    ),
)


@admin.register(Case)
class CaseAdmin(ObjectControlsAdmin, ReadOnlyAdmin):
    """The review queue: open cases first."""

    list_display = (
        "id",
        "status",
        "kind",
        "item",
        "user",
        "frozen",
        "amount_shown",
        "counterparty",
        "rules_hit",
        "created_at",
        "decided_by",
    )
    list_filter = ("status", "kind")
    search_fields = ("=id", "user__email", "counterparty")
    fields = (
        "status",
        "kind",
        "item",
        "user",
        "frozen",
        "amount_shown",
        "held",
        "counterparty",
        "reasons",
        "created_at",
        "decided_by",
        "decided_at",
        "decision_reason",
    )
    readonly_fields = fields
    object_controls = _CONTROLS

    def get_queryset(self, request: HttpRequest) -> QuerySet[Case]:
        return selectors.case_queue()

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["open_rank", "-id"]  # the annotation of selectors.case_queue

    @admin.display(description="Item")
    def item(self, case: Case) -> str:
        item = case.item
        url = reverse(f"admin:{item._meta.app_label}_{item._meta.model_name}_change", args=[item.pk])
        return format_html('<a href="{}">{}</a>', url, item)

    @admin.display(description="Frozen", boolean=True)
    def frozen(self, case: Case) -> bool:
        return case.user.is_frozen

    @admin.display(description="Amount")
    def amount_shown(self, case: Case) -> str:
        return f"{case.amount.normalize():f} {case.currency.code}"

    @admin.display(description="Rules")
    def rules_hit(self, case: Case) -> str:
        return ", ".join(case.rules)

    @admin.display(description="Why")
    def reasons(self, case: Case) -> str:
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li><b>{}</b>: {}</li>", ((h["rule"], h["reason"]) for h in case.hits))
        )

    # -- the controls (buttons on a case's page: ObjectControlsAdmin)

    def control_title(self, case: Case, control: ObjectControl) -> str:
        return f"{control.label}: {case} ({case.kind} of {self.amount_shown(case)} by {case.user.email})"


@admin.register(RuleParameter)
class RuleParameterAdmin(admin.ModelAdmin):
    """Compliance sets what the rules flag; every change lands in the audit trail."""

    list_display = ("rule", "kind", "currency", "amount", "count", "window_minutes", "enabled", "note", "updated_at")
    list_filter = ("rule", "kind", "enabled", "currency")
    list_select_related = ("currency",)
    fields = ("rule", "kind", "currency", "amount", "count", "window_minutes", "enabled", "note")
