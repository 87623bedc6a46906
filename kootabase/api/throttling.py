"""Rate limits beside DRF's per-user and anonymous ones: per API key and per IP.

Counters live in the project's cache (Redis in production), so every web process shares
them. A refused request gets 429 ``throttled`` with ``Retry-After`` (kootabase.api.errors).
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests signed with one API key (rate ``api_key``); other requests are not counted here."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        from accounts.models import ApiKey

        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class IpRateThrottle(SimpleRateThrottle):
    """Every request from one IP, authenticated or not (rate ``ip``): a ceiling for one address."""

    scope = "ip"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
