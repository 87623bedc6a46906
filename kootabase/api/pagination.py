"""Cursor pagination for every list endpoint: stable under inserts, O(1) per page; and
the filters of a list, which are its query parameters but the pagination ones."""

from __future__ import annotations

from typing import Any

from rest_framework import pagination
from rest_framework.request import Request
from rest_framework.serializers import Serializer


class CursorPagination(pagination.CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500


PAGINATION_PARAMS = (CursorPagination.cursor_query_param, CursorPagination.page_size_query_param)


def list_filters(request: Request, serializer_class: type[Serializer]) -> dict[str, Any]:
    """The filters of a list endpoint: its query parameters but ``cursor`` and ``limit``,
    validated by ``serializer_class`` (a bad or unknown one answers 400)."""
    params = {k: v for k, v in request.query_params.items() if k not in PAGINATION_PARAMS}
    query = serializer_class(data=params)
    query.is_valid(raise_exception=True)
    return query.validated_data
