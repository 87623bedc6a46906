"""Audit events for every change made in the admin.

``AuditedAdminMixin`` is applied by the back-office site to every registered ModelAdmin
(see ``accounts.admin_site``), so any change made through the admin — by any app — lands
in the trail with the staff member, the object, the change message and the IP.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest

from audit import actions
from audit.services import audit_record


def _message(message: Any) -> Any:
    if isinstance(message, str) and message.startswith("["):
        try:
            return json.loads(message)
        except ValueError:
            return message
    return message


class AuditedAdminMixin:
    """Writes an audit event next to each admin log entry (add, change, delete)."""

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)
        audit_record(
            action=actions.ADMIN_ADD, actor=request.user, target=obj, request=request, details={"change": message}
        )
        return entry

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        audit_record(
            action=actions.ADMIN_CHANGE,
            actor=request.user,
            target=obj,
            request=request,
            details={"change": _message(message)},
        )
        return entry

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        entries = super().log_deletions(request, queryset)
        for obj in queryset:
            audit_record(action=actions.ADMIN_DELETE, actor=request.user, target=obj, request=request)
        return entries
