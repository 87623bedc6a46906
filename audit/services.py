"""The one way to write to the audit trail."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.db import models
from django.http import HttpRequest

from audit.models import AuditEvent


def _request_ip(request: HttpRequest) -> str | None:
    from accounts.services import client_ip

    ip = client_ip(request)
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def audit_record(
    *,
    action: str,
    actor: Any | None = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str | int = "",
    target_repr: str = "",
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the audit trail.

    Call it inside the transaction of the change it records, so that the event is kept
    exactly when the change is. ``actor`` is the user who acted (``None`` for an unknown
    or anonymous caller); ``target`` the object acted on (or ``target_type``/``target_id``
    when there is no instance); ``request`` supplies the IP and user agent.
    """
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or target.pk
        target_repr = target_repr or str(target)
    is_user = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent.objects.create(
        action=action,
        actor=actor if is_user else None,
        actor_email=getattr(actor, "email", "") if is_user else "",
        target_type=target_type,
        target_id=str(target_id),
        target_repr=str(target_repr)[:200],
        ip=_request_ip(request) if request is not None else None,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300] if request is not None else "",
        details=details or {},
    )
