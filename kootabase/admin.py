"""Back-office building blocks shared by every app."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from kootabase.errors import ServiceError


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


def control_run(
    model_admin: admin.ModelAdmin, request: HttpRequest, form: forms.Form, run: Callable[[dict[str, Any]], str]
) -> bool:
    """Run a staff control once its form is posted and valid: ``run`` gets the cleaned data
    and returns the message for the staff member. A ``ServiceError`` goes on the form, to be
    shown again on the confirmation page. True when the control ran."""
    if request.method != "POST" or not form.is_valid():
        return False
    try:
        model_admin.message_user(request, run(form.cleaned_data))
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return False
    return True


@dataclass(frozen=True)
class ObjectControl:
    """A staff control on one object's page: a button for holders of ``permission`` where
    ``applies_to(obj, viewer)``, a confirmation page with ``form``, and ``run(request, obj,
    cleaned_data)``, which calls the service and returns the message."""

    slug: str
    label: str
    permission: str
    description: str | Callable[[Any], str]  # what it does (given the object)
    form: type[ReasonForm]
    applies_to: Callable[[Any, Any], bool]  # (obj, viewer)
    run: Callable[[HttpRequest, Any, dict[str, Any]], str]


class ObjectControlsAdmin(admin.ModelAdmin):
    """A ModelAdmin whose change page carries the buttons of ``object_controls`` (those the
    viewer may use and that apply), each at ``<id>/control/<slug>/`` (URL name
    ``<app>_<model>_control``): a confirmation page, then the control, then back to the
    object. The view and the control's permission are checked again on the control's page."""

    object_controls: Sequence[ObjectControl] = ()
    change_form_template = "admin/control_change_form.html"

    def control_title(self, obj: Any, control: ObjectControl) -> str:
        return f"{control.label}: {obj}"

    def control_description(self, obj: Any, control: ObjectControl) -> str:
        return control.description(obj) if callable(control.description) else control.description

    def _admin_url(self, name: str, *args: Any) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}", args=args, current_app=self.admin_site.name)

    def get_urls(self) -> list:
        opts = self.model._meta
        control = path(
            "<path:object_id>/control/<slug:control>/",
            self.admin_site.admin_view(self.control_view),
            name=f"{opts.app_label}_{opts.model_name}_control",
        )
        return [control, *super().get_urls()]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None):
        obj = self.get_object(request, object_id)
        tools = []
        if obj is not None:
            tools = [
                (self._admin_url("control", obj.pk, c.slug), c.label)
                for c in self.object_controls
                if request.user.has_perm(c.permission) and c.applies_to(obj, request.user)
            ]
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "object_controls": tools})

    def control_view(self, request: HttpRequest, object_id: str, control: str) -> HttpResponse:
        chosen = next((c for c in self.object_controls if c.slug == control), None)
        obj = self.get_object(request, object_id)
        if chosen is None or obj is None:
            raise Http404(f"No such {self.model._meta.verbose_name} or control.")
        if not (self.has_view_or_change_permission(request, obj) and request.user.has_perm(chosen.permission)):
            raise PermissionDenied
        form = chosen.form(request.POST or None)
        if control_run(self, request, form, lambda data: chosen.run(request, obj, data)):
            return HttpResponseRedirect(self._admin_url("change", obj.pk))
        return control_confirm(
            request,
            self,
            title=self.control_title(obj, chosen),
            description=self.control_description(obj, chosen),
            form=form,
            submit=chosen.label,
        )
