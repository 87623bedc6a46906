"""Back office for users and API keys: admins assign roles (groups) here.

Every change lands in the admin log and the audit trail (the site adds that to every ModelAdmin).
The user controls — freeze / unfreeze (``accounts.freeze_user``) and reset 2FA
(``accounts.reset_otp``) — are buttons on a user's page, each with a confirmation page and
a reason, run by their services (permission check, audit event).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserCreationForm as BaseUserCreationForm
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import otp, services
from accounts.models import ApiKey, User
from kootabase.admin import ObjectControl, ObjectControlsAdmin, ReasonForm


class FreezeForm(ReasonForm):
    """The form of freezing an account (here and from an AML case)."""

    cancel_orders = forms.BooleanField(
        required=False,
        initial=True,
        label="Also cancel their open orders",
        help_text="The matcher cancels every live order of the user and releases its hold.",
    )


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


_CONTROLS = (
    ObjectControl(
        "freeze",
        "Freeze",
        services.FREEZE_USER,
        "A frozen account logs in and looks, but places no order and makes no swap, transfer or withdrawal.",
        FreezeForm,
        lambda user, viewer: not user.is_frozen,
        _freeze,
    ),
    ObjectControl(
        "unfreeze",
        "Unfreeze",
        services.FREEZE_USER,
        "The account may trade, transfer and withdraw again.",
        ReasonForm,
        lambda user, viewer: user.is_frozen,
        _unfreeze,
    ),
    ObjectControl(
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
class UserAdmin(ObjectControlsAdmin, BaseUserAdmin):
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
    object_controls = _CONTROLS

    @admin.display(description="Roles")
    def roles(self, user: User) -> str:
        return ", ".join(sorted(g.name for g in user.groups.all()))

    @admin.display(description="Frozen", boolean=True)
    def frozen(self, user: User) -> bool:
        return user.is_frozen

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    # -- the user controls (ObjectControlsAdmin)

    def control_description(self, user: User, control: ObjectControl) -> str:
        state = (
            f"frozen since {user.frozen_at:%Y-%m-%d %H:%M} UTC ({user.frozen_reason})"
            if user.is_frozen
            else "not frozen"
        )
        return f"{user.email} is {state}. {super().control_description(user, control)}"


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
