"""Database helpers for hot paths, where building statements through the ORM costs more
than running them."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
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


@lru_cache(maxsize=256)
def _insert_sql(alias: str, table: str, columns: tuple[str, ...], rows: int, returning: str | None) -> str:
    connection = connections[alias]
    quote = connection.ops.quote_name
    row = f"({', '.join(['%s'] * len(columns))})"
    sql = f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) VALUES {', '.join([row] * rows)}"  # noqa: S608 - quoted model identifiers; values are parameters
    return f"{sql} RETURNING {quote(returning)}" if returning else sql


def rows_insert(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert ``objs`` (new rows of a model with an auto primary key) with multi-row
    ``INSERT`` statements built once per shape — what ``QuerySet.bulk_create`` does
    without compiling an ORM expression per value. Values, including ``auto_now_add``
    times, come from the fields themselves (``pre_save``, ``get_db_prep_save``). Where
    the database returns inserted rows (MariaDB 10.5+, SQLite, PostgreSQL) each object
    gets its primary key, as with ``bulk_create``."""
    if not objs:
        return
    alias = router.db_for_write(model)
    connection = connections[alias]
    meta = model._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    columns = tuple(field.column for field in fields)
    returning = meta.pk.column if connection.features.can_return_rows_from_bulk_insert else None
    limit = connection.features.max_query_params or 60000
    size = max(1, limit // len(fields))
    with connection.cursor() as cursor:
        for start in range(0, len(objs), size):
            chunk = objs[start : start + size]
            params = [
                field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in chunk for field in fields
            ]
            cursor.execute(_insert_sql(alias, meta.db_table, columns, len(chunk), returning), params)
            if returning:
                for obj, (pk,) in zip(chunk, cursor.fetchall(), strict=True):
                    obj.pk = pk
            for obj in chunk:
                obj._state.adding, obj._state.db = False, alias
