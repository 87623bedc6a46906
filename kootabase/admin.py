"""Back-office building blocks shared by every app."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records shown to those with the view permission that nobody adds, changes or deletes
    in the back office: money and its history change only through services."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReasonForm(forms.Form):
    """The form of a staff control (halt a market, freeze an account ...): why, for the audit trail."""

    reason = forms.CharField(
        max_length=200,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Written to the audit trail with your name.",
    )


def control_confirm(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    *,
    title: str,
    description: str,
    form: forms.Form,
    submit: str,
    objects: Iterable[Any] = (),
    hidden: Iterable[tuple[str, Any]] = (),
) -> TemplateResponse:
    """The confirmation page of a staff control: what it does, to which objects, and its form
    (posted back to the same URL with ``hidden`` fields, e.g. a changelist action's)."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": title,
        "description": description,
        "form": form,
        "submit": submit,
        "objects": list(objects),
        "hidden": list(hidden),
    }
    return TemplateResponse(request, "admin/control_confirm.html", context)
