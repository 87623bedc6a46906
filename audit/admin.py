"""The audit trail in the back office: read-only, for the roles holding ``audit.view_auditevent``."""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "actor_email", "target", "ip")
    list_filter = ("action",)
    search_fields = ("actor_email", "action", "target_type", "target_id", "target_repr", "ip")
    date_hierarchy = "created_at"
    readonly_fields = (
        "created_at",
        "action",
        "actor",
        "actor_email",
        "target_type",
        "target_id",
        "target_repr",
        "ip",
        "user_agent",
        "details_pretty",
    )
    fields = readonly_fields
    actions = None  # no bulk delete, no actions at all

    @admin.display(description="Target")
    def target(self, event: AuditEvent) -> str:
        return f"{event.target_type} #{event.target_id} {event.target_repr}".strip() if event.target_type else "-"

    @admin.display(description="Details")
    def details_pretty(self, event: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.details, indent=2, sort_keys=True, default=str))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
