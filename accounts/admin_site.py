"""The back-office site: every staff login needs a password and a second factor.

``AdminSite`` is django-otp's ``OTPAdminSite`` (a staff member not verified by one of
their own confirmed TOTP devices or recovery codes is treated as not staff) with two
additions: the password step goes through ``accounts.services.user_authenticate`` (so
admin logins share the lockout, the login history and the audit trail with the API),
and every ModelAdmin registered on it records its changes in the audit trail.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

from audit.mixins import AuditedAdminMixin
from kootabase.errors import ServiceError


class AdminLoginForm(OTPAdminAuthenticationForm):
    """Email, password and a code from the authenticator app (or a recovery code)."""

    def clean(self) -> dict[str, Any]:
        from accounts.otp import normalize_code, otp_device_for_code
        from accounts.services import user_authenticate

        email, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if email and password:
            try:
                self.user_cache = user_authenticate(request=self.request, email=email, password=password)
            except ServiceError as exc:
                raise ValidationError(exc.message, code=exc.code) from exc
            self.confirm_login_allowed(self.user_cache)
        user, token = self.get_user(), self.cleaned_data.get("otp_token")
        if user is not None and token and not self.cleaned_data.get("otp_device"):
            # No device picked in the form: the code's format says which one it is for.
            device = otp_device_for_code(user=user, code=token)
            self.cleaned_data["otp_device"] = device.persistent_id if device else ""
            self.cleaned_data["otp_token"] = normalize_code(token)
        self.clean_otp(user)
        return self.cleaned_data


class AdminSite(OTPAdminSite):
    site_header = "Kootabase back office"
    site_title = "Kootabase back office"
    index_title = "Back office"
    login_form = AdminLoginForm

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)

    def get_urls(self) -> list:
        from monitoring.views import admin_urls

        return [*admin_urls(self), *super().get_urls()]

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        from monitoring.views import admin_app_entry

        app_list = super().get_app_list(request, app_label)
        if app_label in (None, "monitoring") and (entry := admin_app_entry(request, self)):
            app_list = sorted([*app_list, entry], key=lambda app: app["name"].lower())
        return app_list

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, AuditedAdminMixin):
            admin_class = type(
                admin_class.__name__, (AuditedAdminMixin, admin_class), {"__module__": admin_class.__module__}
            )
        super().register(model_or_iterable, admin_class, **options)
