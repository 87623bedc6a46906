"""Cursor pagination for every list endpoint: stable under inserts, O(1) per page; and
the filters of a list, which are its query parameters but the pagination ones."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, QuerySet
from rest_framework import exceptions, pagination
from rest_framework.request import Request
from rest_framework.serializers import ErrorDetail, Serializer
from rest_framework.views import APIView


class CursorPagination(pagination.CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    invalid_cursor_message = "Invalid cursor: follow a page's next or previous link."
    invalid_limit_message = f"The page size is a whole number from 1 (at most {max_page_size} are given)."

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: APIView | None = None) -> list[Any]:
        self.model: type[Model] = queryset.model  # the position of a cursor is one of its values
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request: Request) -> int:
        """``limit``: digits of a number from 1, at most ``max_page_size`` given; anything
        else is a 400 ``limit_invalid`` (DRF answers it with the default page size)."""
        limit = request.query_params.get(self.page_size_query_param)
        if limit is None:
            return self.page_size
        digits = limit.lstrip("0")
        if not (digits.isascii() and digits.isdigit()):
            detail = ErrorDetail(self.invalid_limit_message, code="invalid")
            raise exceptions.ValidationError({self.page_size_query_param: [detail]})
        return min(int(digits), self.max_page_size) if len(digits) <= 4 else self.max_page_size

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        """The cursor of the request, if any: one this API did not write is a 400
        ``cursor_invalid`` (DRF answers 404, and lets a position of the wrong type reach the
        database)."""
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                field = self.model._meta.get_field(self.ordering[0].lstrip("-"))
                field.clean(cursor.position, None)
        except (exceptions.NotFound, DjangoValidationError):
            detail = ErrorDetail(self.invalid_cursor_message, code="cursor_invalid")
            raise exceptions.ValidationError({self.cursor_query_param: [detail]}) from None
        return cursor


PAGINATION_PARAMS = (CursorPagination.cursor_query_param, CursorPagination.page_size_query_param)


def list_filters(request: Request, serializer_class: type[Serializer]) -> dict[str, Any]:
    """The filters of a list endpoint: its query parameters but ``cursor`` and ``limit``,
    validated by ``serializer_class`` (a bad or unknown one answers 400)."""
    params = {k: v for k, v in request.query_params.items() if k not in PAGINATION_PARAMS}
    query = serializer_class(data=params)
    query.is_valid(raise_exception=True)
    return query.validated_data
