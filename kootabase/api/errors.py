"""One error format for every API failure: ``{"code", "message", "details"}``.

``code`` is machine-readable and specific. For validation errors it is the first
failing field's own code when that code is specific (``email_taken``); DRF's generic
codes are qualified with the field (``email_invalid``, ``amount_max_decimal_places``).
``details`` carries every field error as ``{field: [{"code", "message"}]}``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from kootabase.errors import RateLimited, ServiceError

logger = logging.getLogger(__name__)

GENERIC_CODES = frozenset(
    {
        "invalid",
        "required",
        "null",
        "blank",
        "empty",
        "max_length",
        "min_length",
        "max_value",
        "min_value",
        "max_digits",
        "max_decimal_places",
        "max_whole_digits",
        "max_string_length",
        "invalid_choice",
        "not_a_list",
        "not_a_dict",
        "does_not_exist",
        "incorrect_type",
        "date",
        "datetime",
        "make_aware",
        "overflow",
    }
)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or {}}


def _first_leaf(details: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], dict[str, str]] | None:
    if isinstance(details, dict) and "code" in details and "message" in details:
        return path, details
    if isinstance(details, dict):
        for key, value in details.items():
            found = _first_leaf(value, (*path, str(key)))
            if found:
                return found
    if isinstance(details, list):
        for index, value in enumerate(details):
            found = _first_leaf(value, path if isinstance(value, dict) and "code" in value else (*path, str(index)))
            if found:
                return found
    return None


def _validation_error(exc: exceptions.ValidationError) -> tuple[str, str, dict[str, Any]]:
    details = exc.get_full_details()
    if not isinstance(details, dict):
        details = {"non_field_errors": details}
    leaf = _first_leaf(details)
    if leaf is None:
        return "invalid", "The request is invalid.", details
    path, error = leaf
    field = ".".join(p for p in path if p != "non_field_errors")
    code = str(error["code"])
    if code in GENERIC_CODES:
        # Qualify with the nearest named field: an error on item 0 of "scopes" is "scopes_...".
        named = [p for p in path if not p.isdigit() and p != "non_field_errors"]
        code = f"{named[-1] if named else 'body'}_{code}"
    message = f"{field}: {error['message']}" if field else str(error["message"])
    return code, message, details


def _suspicious(exc: SuspiciousOperation) -> tuple[int, str, str]:
    """A request Django refuses to read: too large a body, too many query parameters (Django
    answers them 400 itself, and logs them to ``django.security``, when no view catches them)."""
    logging.getLogger(f"django.security.{type(exc).__name__}").error(str(exc))
    if isinstance(exc, RequestDataTooBig):
        return 413, "request_too_large", "The request body is too large."
    if isinstance(exc, TooManyFieldsSent):
        return 400, "too_many_fields", "The request has too many parameters."
    return 400, "bad_request", "The request cannot be read."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every failure leaves in the one format."""
    headers: dict[str, str] = {}
    if isinstance(exc, ServiceError):
        status_code, code, message, details = exc.status, exc.code, exc.message, exc.details
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, exceptions.ValidationError):
        status_code = status.HTTP_400_BAD_REQUEST
        code, message, details = _validation_error(exc)
    elif isinstance(exc, Http404):
        status_code, code, message, details = 404, "not_found", "Not found.", {}
    elif isinstance(exc, DjangoPermissionDenied):
        status_code, code, message, details = 403, "permission_denied", "You may not do this.", {}
    elif isinstance(exc, SuspiciousOperation):
        status_code, code, message = _suspicious(exc)
        details = {}
    elif isinstance(exc, exceptions.APIException):
        status_code = exc.status_code
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        if isinstance(exc, exceptions.ParseError):
            code = "malformed_json"
        detail = exc.detail
        if isinstance(detail, dict):
            message = str(detail.get("detail", exc.default_detail))
            details = {k: v for k, v in exc.get_full_details().items() if k != "detail"}
        else:
            message, details = str(detail), {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            retry_after = max(1, math.ceil(exc.wait))  # whole seconds, never 0
            headers["Retry-After"] = str(retry_after)
            details = {"retry_after": retry_after}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
    else:
        logger.exception("Unhandled error in %s", context.get("view"))
        set_rollback()
        return Response(error_body("server_error", "Internal server error."), status=500)
    set_rollback()
    return Response(error_body(str(code), message, details), status=status_code, headers=headers)


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Project-level 404 for paths no view matched (handler404)."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error_view(request: HttpRequest) -> JsonResponse:
    """Project-level 500 (handler500): JSON for API paths."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    from django.views.defaults import server_error

    return server_error(request)
