"""Back office for AML: the compliance review queue and the rules' parameters.

The queue lists open cases first, with the rules that hit, the item and the user. A case's
page shows why each rule flagged it and carries the controls — release, reject (reason
required), freeze the account — each with a confirmation page and a reason, run by
``aml.services`` (permission check, audit event). Cases are never edited by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from aml import selectors, services
from aml.models import Case, CaseStatus, RuleParameter
from kootabase.admin import ReadOnlyAdmin, ReasonForm, control_confirm
from kootabase.errors import ServiceError


class FreezeForm(ReasonForm):
    cancel_orders = forms.BooleanField(
        required=False,
        initial=True,
        label="Also cancel their open orders",
        help_text="The matcher cancels every live order of the user and releases its hold.",
    )


@dataclass(frozen=True)
class _Control:
    slug: str
    label: str
    permission: str
    description: Callable[[Case], str]
    form: type[ReasonForm]
    applies_to: Callable[[Case], bool]
    run: Callable[[HttpRequest, Case, dict[str, Any]], str]  # returns the message


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


_CONTROLS = {
    control.slug: control
    for control in (
        _Control(
            "release",
            "Release",
            services.DECIDE_CASE,
            lambda case: _RELEASE[case.kind],
            ReasonForm,
            lambda case: case.status == CaseStatus.OPEN,
            _release,
        ),
        _Control(
            "reject",
            "Reject",
            services.DECIDE_CASE,
            lambda case: _REJECT[case.kind],
            ReasonForm,
            lambda case: case.status == CaseStatus.OPEN,
            _reject,
        ),
        _Control(
            "freeze",
            "Freeze the account",
            services.FREEZE_USER,
            lambda case: (
                f"{case.user.email} logs in and looks, but places no order and makes no swap, transfer or "
                "withdrawal. The case stays as it is."
            ),
            FreezeForm,
            lambda case: not case.user.is_frozen,
            _freeze,
        ),
    )
}


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
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
    change_form_template = "admin/control_change_form.html"

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

    # -- the controls (buttons on a case's page)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/control/<slug:control>/", view(self.control_view), name="aml_case_control"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None):
        case = self.get_object(request, object_id)
        tools = []
        if case is not None:
            tools = [
                (reverse("admin:aml_case_control", args=[case.pk, c.slug]), c.label)
                for c in _CONTROLS.values()
                if c.applies_to(case) and request.user.has_perm(c.permission)
            ]
        extra_context = {**(extra_context or {}), "object_controls": tools}
        return super().change_view(request, object_id, form_url, extra_context)

    def control_view(self, request: HttpRequest, object_id: str, control: str) -> HttpResponse:
        case = self.get_object(request, object_id)
        chosen = _CONTROLS.get(control)
        if case is None or chosen is None:
            raise Http404("No such case or control.")
        if not (self.has_view_permission(request, case) and request.user.has_perm(chosen.permission)):
            raise PermissionDenied
        form = chosen.form(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                self.message_user(request, chosen.run(request, case, form.cleaned_data))
                return HttpResponseRedirect(reverse("admin:aml_case_change", args=[case.pk]))
            except ServiceError as exc:
                form.add_error(None, exc.message)
        return control_confirm(
            request,
            self,
            title=f"{chosen.label}: {case} ({case.kind} of {self.amount_shown(case)} by {case.user.email})",
            description=chosen.description(case),
            form=form,
            submit=chosen.label,
        )


@admin.register(RuleParameter)
class RuleParameterAdmin(admin.ModelAdmin):
    """Compliance sets what the rules flag; every change lands in the audit trail."""

    list_display = ("rule", "kind", "currency", "amount", "count", "window_minutes", "enabled", "note", "updated_at")
    list_filter = ("rule", "kind", "enabled", "currency")
    list_select_related = ("currency",)
    fields = ("rule", "kind", "currency", "amount", "count", "window_minutes", "enabled", "note")
