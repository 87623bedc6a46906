"""Back office: market operators edit markets and fee tiers and use the market controls
(halt, resume, cancel-only, cancel all open orders) on the markets they may operate;
admins assign markets to operators; orders and trades are read-only.

The controls run ``orders.controls`` (permission, audit event); the status is read-only in
the form, so it changes only through them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse

from accounts.models import User
from kootabase.admin import ReadOnlyAdmin, ReasonForm, control_confirm, control_run
from kootabase.errors import ServiceError
from orders import controls
from orders.models import LIVE_STATUSES, FeeTier, Market, MatcherState, Order, Trade
from orders.pricing import fee_rate_check, market_check


@dataclass(frozen=True)
class _Control:
    slug: str
    label: str
    description: str
    status: str | None  # the status it sets; None: cancel every open order

    def applies_to(self, market: Market) -> bool:
        return self.status is None or market.status != self.status


_CONTROLS = {
    control.slug: control
    for control in (
        _Control(
            "halt",
            "Halt",
            "Placement is refused and the matcher stops: no matching, no cancels. The book, the pending "
            "orders and the cancel requests wait, in order, until the market is resumed or set cancel-only.",
            Market.Status.HALTED,
        ),
        _Control(
            "cancel-only",
            "Set cancel-only",
            "Placement is refused and nothing matches; the matcher performs cancels. Other pending orders "
            "wait until the market is resumed.",
            Market.Status.CANCEL_ONLY,
        ),
        _Control(
            "resume",
            "Resume",
            "Orders are accepted and matched again; what waited is processed in order.",
            Market.Status.ACTIVE,
        ),
        _Control(
            "cancel-orders",
            "Cancel all open orders",
            "Every live order of the market (pending, untriggered, open, partially filled) is cancelled by the "
            "matcher and its hold released; on a halted market once it is resumed or set cancel-only.",
            None,
        ),
    )
}


class OperatorsForm(ReasonForm):
    operators = forms.ModelMultipleChoiceField(
        queryset=User.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Active staff members of the market-operator role; they halt, resume and cancel on this market.",
    )
    field_order = ("operators", "reason")


class MarketForm(forms.ModelForm):
    """A market's sizes must fit its currencies and its rates be fractions
    (``orders.pricing.market_check``): a market that breaks them would make trades the
    ledger cannot post."""

    class Meta:
        model = Market
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:  # a missing or malformed field has its own error
            return data
        candidate = copy.copy(self.instance)  # the fields read-only in the form keep their values
        for name, value in data.items():
            setattr(candidate, name, value)
        try:
            market_check(candidate)
        except ServiceError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from None
        return data


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    form = MarketForm
    list_display = ("symbol", "status", "tick_size", "lot_size", "min_notional", "maker_fee_rate", "taker_fee_rate")
    list_filter = ("status",)
    search_fields = ("symbol",)
    actions = ["halt_selected", "cancel_only_selected", "resume_selected", "cancel_orders_selected"]
    change_form_template = "admin/control_change_form.html"

    def get_readonly_fields(self, request: Any, obj: Market | None = None) -> tuple[str, ...]:
        # Sizes and currencies are fixed once orders may refer to them; the status changes
        # only through the controls (permission-checked and audited).
        return ("symbol", "base", "quote", "tick_size", "lot_size", "status") if obj else ()

    def has_change_permission(self, request: HttpRequest, obj: Market | None = None) -> bool:
        # Editing a market (its fees, its minimum notional) is per market too: a market
        # operator changes only the markets they operate; others they may only view.
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or controls.market_may_operate(user=request.user, market=obj)

    def save_model(self, request: HttpRequest, obj: Market, form: Any, change: bool) -> None:
        if change:  # only what the form changed: a status set meanwhile by a control stays
            obj.save(update_fields=[*form.changed_data, "updated_at"])
        else:
            obj.save()

    # -- the controls on one market (buttons on its page)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/control/<slug:control>/", view(self.control_view), name="orders_market_control"),
            path("<path:object_id>/operators/", view(self.operators_view), name="orders_market_operators"),
            *super().get_urls(),
        ]

    def _market(self, request: HttpRequest, object_id: str) -> Market:
        market = self.get_object(request, object_id)
        if market is None:
            raise Http404("No such market.")
        if not self.has_view_or_change_permission(request, market):
            raise PermissionDenied
        return market

    def _change_url(self, market: Market) -> str:
        return reverse("admin:orders_market_change", args=[market.pk], current_app=self.admin_site.name)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None):
        market = self.get_object(request, object_id)
        tools = []
        if market is not None:
            if controls.market_may_operate(user=request.user, market=market):
                tools = [
                    (reverse("admin:orders_market_control", args=[market.pk, c.slug]), c.label)
                    for c in _CONTROLS.values()
                    if c.applies_to(market)
                ]
            if request.user.has_perm(controls.ASSIGN_MARKET_OPERATOR):
                tools.append((reverse("admin:orders_market_operators", args=[market.pk]), "Operators"))
        extra_context = {**(extra_context or {}), "object_controls": tools}
        return super().change_view(request, object_id, form_url, extra_context)

    def control_view(self, request: HttpRequest, object_id: str, control: str) -> HttpResponse:
        market = self._market(request, object_id)
        chosen = _CONTROLS.get(control)
        if chosen is None:
            raise Http404("No such control.")
        if not controls.market_may_operate(user=request.user, market=market):
            raise PermissionDenied
        form = ReasonForm(request.POST or None)
        if control_run(self, request, form, lambda data: _run(request, chosen, market, data["reason"])):
            return HttpResponseRedirect(self._change_url(market))
        live = Order.objects.filter(market=market, status__in=LIVE_STATUSES, cancel_requested=False).count()
        return control_confirm(
            request,
            self,
            title=f"{chosen.label}: {market.symbol}",
            description=f"{market.symbol} is {market.status}, with {live} live order(s). {chosen.description}",
            form=form,
            submit=chosen.label,
        )

    def operators_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        market = self._market(request, object_id)
        if not request.user.has_perm(controls.ASSIGN_MARKET_OPERATOR):
            raise PermissionDenied
        current = controls.market_operators(market=market)
        form = OperatorsForm(request.POST or None, initial={"operators": list(current)})
        form.fields["operators"].queryset = User.objects.filter(
            pk__in=[*controls.market_operator_candidates().values_list("pk", flat=True), *(u.pk for u in current)]
        ).order_by("email")

        def assign(data: dict[str, Any]) -> str:
            added, removed = controls.market_operators_set(
                market=market, operators=data["operators"], actor=request.user, reason=data["reason"], request=request
            )
            return f"{market.symbol}: operators added: {added or 'none'}; removed: {removed or 'none'}."

        if control_run(self, request, form, assign):
            return HttpResponseRedirect(self._change_url(market))
        return control_confirm(
            request,
            self,
            title=f"Operators of {market.symbol}",
            description=(
                f"The market operators who may halt, resume, set cancel-only and cancel all orders of "
                f"{market.symbol}. Holders of the permission on every market are not listed."
            ),
            form=form,
            submit="Save",
        )

    # -- the same controls on several markets (changelist actions)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return controls.markets_operated_by(user=request.user).exists()

    def _action(self, request: HttpRequest, queryset: QuerySet[Market], slug: str) -> HttpResponse | None:
        chosen = _CONTROLS[slug]
        allowed = controls.markets_operated_by(user=request.user)
        markets = list(queryset.filter(pk__in=allowed.values("pk")))
        refused = sorted(m.symbol for m in queryset.exclude(pk__in=allowed.values("pk")))
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            for market in markets:
                try:
                    self.message_user(request, _run(request, chosen, market, form.cleaned_data["reason"]))
                except ServiceError as exc:
                    self.message_user(request, f"{market.symbol}: {exc.message}", messages.ERROR)
            if refused:
                left = f"Not yours to operate, left as they are: {', '.join(refused)}."
                self.message_user(request, left, messages.WARNING)
            return None
        description = chosen.description
        if refused:
            description += f" Not yours to operate, left out: {', '.join(refused)}."
        return control_confirm(
            request,
            self,
            title=f"{chosen.label}: {len(markets)} market(s)",
            description=description,
            form=form,
            submit=chosen.label,
            objects=[f"{m.symbol} ({m.status})" for m in markets],
            hidden=[("action", request.POST["action"]), ("apply", "yes")]
            + [(ACTION_CHECKBOX_NAME, m.pk) for m in queryset],
        )

    @admin.action(description="Halt the selected markets", permissions=["operate"])
    def halt_selected(self, request: HttpRequest, queryset: QuerySet[Market]) -> HttpResponse | None:
        return self._action(request, queryset, "halt")

    @admin.action(description="Set the selected markets cancel-only", permissions=["operate"])
    def cancel_only_selected(self, request: HttpRequest, queryset: QuerySet[Market]) -> HttpResponse | None:
        return self._action(request, queryset, "cancel-only")

    @admin.action(description="Resume the selected markets", permissions=["operate"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Market]) -> HttpResponse | None:
        return self._action(request, queryset, "resume")

    @admin.action(description="Cancel all open orders of the selected markets", permissions=["operate"])
    def cancel_orders_selected(self, request: HttpRequest, queryset: QuerySet[Market]) -> HttpResponse | None:
        return self._action(request, queryset, "cancel-orders")


def _run(request: HttpRequest, control: _Control, market: Market, reason: str) -> str:
    """Run one control through ``orders.controls``; the message for the staff member."""
    if control.status is None:
        count = controls.market_orders_cancel_all(market=market, actor=request.user, reason=reason, request=request)
        when = " once it is resumed or set cancel-only" if market.status == Market.Status.HALTED else ""
        return f"{market.symbol}: {count} open order(s) will be cancelled by the matcher{when}."
    changed = controls.market_status_set(
        market=market, status=control.status, actor=request.user, reason=reason, request=request
    )
    return f"{market.symbol} is now {market.status}." if changed else f"{market.symbol} was already {market.status}."


class FeeTierForm(forms.ModelForm):
    class Meta:
        model = FeeTier
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("maker_fee_rate", "taker_fee_rate"):
            if data.get(name) is not None:
                try:
                    fee_rate_check(data[name], name, code="fee_tier_invalid", subject="The tier")
                except ServiceError as exc:
                    self.add_error(name, forms.ValidationError(exc.message, code=exc.code))
        return data


@admin.register(FeeTier)
class FeeTierAdmin(admin.ModelAdmin):
    form = FeeTierForm
    list_display = ("group", "market", "maker_fee_rate", "taker_fee_rate")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "market", "side", "type", "price", "quantity", "filled_quantity", "status")
    list_filter = ("status", "market", "side", "type")
    search_fields = ("=id", "client_order_id", "user__email")
    list_select_related = ("user", "market")


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ("id", "market", "trade_no", "price", "quantity", "taker_side", "created_at")
    list_filter = ("market",)
    list_select_related = ("market",)


@admin.register(MatcherState)
class MatcherStateAdmin(ReadOnlyAdmin):
    list_display = ("market", "epoch", "last_seq", "last_trade_no", "owner", "heartbeat_at")
