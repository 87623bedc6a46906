"""What a request signed with an API key may do: the key's scopes.

A view names the scope each method needs in ``api_key_scopes`` (``{"GET": "read",
"POST": "trade"}``). Without it, reads (GET, HEAD, OPTIONS) need ``read`` and every write
is refused to API keys (``api_key_not_allowed``): account security — passwords, 2FA, API
keys themselves — is never changed by a bot. Requests authenticated otherwise pass.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiKey, ApiKeyScope
from kootabase.errors import PermissionDenied

READ_METHODS = ("GET", "HEAD", "OPTIONS")


def required_scope(view: Any, method: str) -> str | None:
    declared = getattr(view, "api_key_scopes", None) or {}
    if method in declared:
        return declared[method]
    return ApiKeyScope.READ if method in READ_METHODS else None


class HasApiKeyScope(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        scope = required_scope(view, request.method or "")
        if scope is None:
            raise PermissionDenied("api_key_not_allowed", "API keys cannot be used here; log in instead.")
        if scope not in api_key.scopes:
            raise PermissionDenied(
                "api_key_scope", f"This API key lacks the {scope!r} scope.", details={"required_scope": str(scope)}
            )
        return True
