"""Database helpers for hot paths, where building statements through the ORM costs more
than running them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router


def rows_update(model: type[models.Model], objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of every object in ``objs`` with one ``UPDATE ... CASE`` statement per
    chunk — what ``QuerySet.bulk_update`` does, without resolving an ORM expression per value
    (which dominates the cost for hundreds of rows). Values are converted by the model fields
    themselves (``get_db_prep_save``), so they are stored exactly as the ORM would store them."""
    if not objs:
        return
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    meta = model._meta
    pk = quote(meta.pk.column)
    columns = [meta.get_field(name) for name in fields]
    per_row = 2 * len(columns) + 1
    limit = connection.features.max_query_params or 60000
    size = max(1, (limit - 1) // per_row)
    with connection.cursor() as cursor:
        for start in range(0, len(objs), size):
            chunk = objs[start : start + size]
            ids = [obj.pk for obj in chunk]
            params: list[Any] = []
            assignments = []
            whens = " ".join(["WHEN %s THEN %s"] * len(chunk))
            for field in columns:
                assignments.append(f"{quote(field.column)} = CASE {pk} {whens} END")
                for obj in chunk:
                    params += [obj.pk, field.get_db_prep_save(getattr(obj, field.attname), connection)]
            params += ids
            cursor.execute(  # identifiers come from the model and are quoted; every value is a parameter
                f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
                f"WHERE {pk} IN ({', '.join(['%s'] * len(ids))})",
                params,
            )
