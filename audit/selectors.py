"""Audit trail reads."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from audit import actions
from audit.models import AuditEvent


def login_history(*, user: Any) -> QuerySet[AuditEvent]:
    """Successful and failed logins to ``user``'s account, newest first."""
    return AuditEvent.objects.filter(
        target_type=user._meta.label_lower, target_id=str(user.pk), action__in=actions.LOGIN_HISTORY
    ).order_by("-id")
