"""Domain errors raised by services and turned into API errors by one handler.

A service raises ``ServiceError(code, message, status=..., details=...)`` (or one of the
subclasses) before it changes anything, or inside its transaction so that the change
rolls back. Views never build error responses by hand.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status: int = 400

    def __init__(self, code: str, message: str, *, status: int | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.details = details or {}


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class PermissionDenied(ServiceError):
    status = 403


class RateLimited(ServiceError):
    status = 429

    def __init__(self, code: str, message: str, *, retry_after: int, details: dict[str, Any] | None = None):
        super().__init__(code, message, details=details)
        self.retry_after = retry_after
