"""Back office for users and API keys: admins assign roles (groups) here.

Every change lands in the admin log and the audit trail (the site adds that to every ModelAdmin).
The user controls — freeze / unfreeze (``accounts.freeze_user``) and reset 2FA
(``accounts.reset_otp``) — are buttons on a user's page, each with a confirmation page and
a reason, run by their services (permission check, audit event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserCreationForm as BaseUserCreationForm
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse

from accounts import otp, services
from accounts.models import ApiKey, User
from kootabase.admin import ReasonForm, control_confirm
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
    description: str
    form: type[ReasonForm]
    applies_to: Callable[[User, User], bool]  # (target, viewer)
    run: Callable[[HttpRequest, User, dict[str, Any]], str]  # returns the message


def _freeze(request: HttpRequest, user: User, data: dict[str, Any]) -> str:
    services.user_freeze(
        user=user, actor=request.user, reason=data["reason"], cancel_orders=data["cancel_orders"], request=request
    )
    return f"{user.email} is frozen" + (" and their open orders are being cancelled." if data["cancel_orders"] else ".")


def _unfreeze(request: HttpRequest, user: User, data: dict[str, Any]) -> str:
    services.user_unfreeze(user=user, actor=request.user, reason=data["reason"], request=request)
    return f"{user.email} is no longer frozen."


def _reset_otp(request: HttpRequest, user: User, data: dict[str, Any]) -> str:
    otp.otp_reset(user=user, actor=request.user, reason=data["reason"], request=request)
    return f"Two-factor authentication of {user.email} is off and their sessions have ended."


_CONTROLS = {
    control.slug: control
    for control in (
        _Control(
            "freeze",
            "Freeze",
            services.FREEZE_USER,
            "A frozen account logs in and looks, but places no order and makes no swap, transfer or withdrawal.",
            FreezeForm,
            lambda user, viewer: not user.is_frozen,
            _freeze,
        ),
        _Control(
            "unfreeze",
            "Unfreeze",
            services.FREEZE_USER,
            "The account may trade, transfer and withdraw again.",
            ReasonForm,
            lambda user, viewer: user.is_frozen,
            _unfreeze,
        ),
        _Control(
            "reset-2fa",
            "Reset 2FA",
            otp.RESET_OTP,
            "Removes the user's authenticator and recovery codes and ends every session and token they hold: "
            "they log in with their password alone and enrol a new device. Check who is asking first.",
            ReasonForm,
            lambda user, viewer: user.pk != viewer.pk and otp.otp_has_devices(user=user),
            _reset_otp,
        ),
    )
}


class FrozenFilter(admin.SimpleListFilter):
    title = "frozen"
    parameter_name = "frozen"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Frozen"), ("no", "Not frozen")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> QuerySet[User]:
        if self.value() in ("yes", "no"):
            return queryset.filter(frozen_at__isnull=self.value() == "no")
        return queryset


class UserCreationForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserCreationForm
    ordering = ("-id",)
    list_display = ("email", "name", "is_active", "is_staff", "frozen", "roles", "created_at")
    list_filter = ("is_active", "is_staff", FrozenFilter, "groups")
    search_fields = ("email", "name", "phone_number")
    readonly_fields = ("last_login", "created_at", "updated_at", "frozen_at", "frozen_reason")
    filter_horizontal = ("groups",)
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name", "phone_number")}),
        ("Access", {"fields": ("is_active", "is_staff", "groups", "frozen_at", "frozen_reason")}),
        ("Times", {"fields": ("last_login", "created_at", "updated_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    change_form_template = "admin/control_change_form.html"

    @admin.display(description="Roles")
    def roles(self, user: User) -> str:
        return ", ".join(sorted(g.name for g in user.groups.all()))

    @admin.display(description="Frozen", boolean=True)
    def frozen(self, user: User) -> bool:
        return user.is_frozen

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    # -- the user controls

    def get_urls(self) -> list:
        control = path(
            "<path:object_id>/control/<slug:control>/",
            self.admin_site.admin_view(self.control_view),
            name="accounts_user_control",
        )
        return [control, *super().get_urls()]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None):
        user = self.get_object(request, object_id)
        tools = []
        if user is not None:
            tools = [
                (reverse("admin:accounts_user_control", args=[user.pk, c.slug]), c.label)
                for c in _CONTROLS.values()
                if request.user.has_perm(c.permission) and c.applies_to(user, request.user)
            ]
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "object_controls": tools})

    def control_view(self, request: HttpRequest, object_id: str, control: str) -> HttpResponse:
        chosen = _CONTROLS.get(control)
        user = self.get_object(request, object_id)
        if chosen is None or user is None:
            raise Http404("No such user or control.")
        if not (self.has_view_or_change_permission(request, user) and request.user.has_perm(chosen.permission)):
            raise PermissionDenied
        form = chosen.form(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                self.message_user(request, chosen.run(request, user, form.cleaned_data))
                return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
            except ServiceError as exc:
                form.add_error(None, exc.message)
        state = (
            f"frozen since {user.frozen_at:%Y-%m-%d %H:%M} UTC ({user.frozen_reason})"
            if user.is_frozen
            else "not frozen"
        )
        return control_confirm(
            request,
            self,
            title=f"{chosen.label}: {user.email}",
            description=f"{user.email} is {state}. {chosen.description}",
            form=form,
            submit=chosen.label,
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Bots' keys, for review. The secret is never shown; keys are revoked by their owner."""

    list_display = ("label", "user", "key_prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__email", "label", "key")
    fields = ("user", "label", "key", "scopes", "ip_allowlist", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    list_select_related = ("user",)

    @admin.display(description="Key")
    def key_prefix(self, api_key: ApiKey) -> str:
        return f"{api_key.key[:8]}…"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
