"""Hot read queries built by the ORM once and run with a plain cursor.

Building a query through the ORM (clone, filter, compile) costs several times what the
database then spends on a small indexed read. A ``Statement`` keeps the ORM's SQL for a
query shape and runs it again with new values: the query is built once per database
vendor from sample values, the position of each named value among the compiled
parameters is found by building it a second time with that value changed, and every
call prepares its values through the same model fields the ORM would use and converts
the rows with the ORM's own converters. So the SQL, the parameters and the results are
the ORM's, without its per-call work::

    by_email = Statement(
        lambda email: User.objects.filter(email=email, is_active=True).values_list(*COLUMNS),
        email=User._meta.get_field("email"),
    )
    rows = by_email.rows(email="alice@example.com")

``build`` must give the same SQL for any values (no conditions that depend on a value),
and each named value must appear once among the parameters; both are checked when the
statement is compiled. A list of values (``pk__in=ids``) is named with ``Many``: the
statement is compiled once per list length rounded up to a power of two, and a shorter
list is padded with its last value, which an ``IN`` list does not mind::

    by_ids = Statement(lambda ids: Order.objects.filter(pk__in=ids), ids=Many(Order._meta.pk))
    orders = by_ids.objects(ids=[3, 5, 8])
 A statement can have no
named values at all: its query is then fixed (the matcher's queue reads, built once per
market). ``index`` names the index MariaDB/MySQL must read the table through
(``kootabase.db.sql_using_index``); ``objects`` gives the rows of a query of whole rows
as model instances.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Model, QuerySet

from kootabase.db import index_hinted


class Many:
    """A named value of a ``Statement`` that is a list of ``field``'s values (an ``__in``)."""

    def __init__(self, field: Field) -> None:
        self.field = field


def _sample(field: Field, n: int, name: str) -> Any:
    kind = (field.target_field if field.is_relation else field).get_internal_type()
    if kind.endswith("DateTimeField"):
        return datetime(1971, 1, 1, tzinfo=UTC) + timedelta(days=n)
    if kind in ("CharField", "EmailField", "TextField", "SlugField"):
        return f"statement-sample-{n}"
    if kind.endswith("IntegerField") or kind in ("AutoField", "BigAutoField", "SmallAutoField"):
        return 987_650_000 + n
    raise TypeError(f"no sample value for a {kind} ({name})")


def _samples(fields: dict[str, Field | Many], variant: int, size: int) -> dict[str, Any]:
    """Distinct values for every named field, ``size`` of them for a list (a second set
    for ``variant`` 1)."""
    values: dict[str, Any] = {}
    for i, (name, field) in enumerate(fields.items()):
        if isinstance(field, Many):
            values[name] = [_sample(field.field, 2 * (i + k * len(fields)) + variant, name) for k in range(size)]
        else:
            values[name] = _sample(field, 2 * i + variant, name)
    return values


def _list_size(length: int) -> int:
    """The length a list of ``length`` values is compiled for: the next power of two."""
    if length < 1:
        raise ValueError("a Many value needs at least one value")
    return 1 << (length - 1).bit_length()


class _Compiled:
    def __init__(
        self,
        sql: str,
        params: list[Any],
        positions: dict[str, list[int]],
        converters: dict[int, Any],
        model: type[Model] | None,
    ) -> None:
        self.sql, self.params, self.positions, self.converters = sql, params, positions, converters
        self.model = model  # set when the rows are whole rows of this model, in its field order
        self.attnames = [f.attname for f in model._meta.concrete_fields] if model is not None else []


def _whole_rows_of(compiler: Any) -> type[Model] | None:
    """The model whose whole rows, in field order, the compiled query selects, if any."""
    klass_info = compiler.klass_info
    if not klass_info or klass_info.get("related_klass_infos"):
        return None
    model = klass_info["model"]
    targets = [getattr(column, "target", None) for column, _, _ in compiler.select]
    return model if targets == list(model._meta.concrete_fields) else None


class Statement:
    """The query ``build(**values)`` makes, compiled once; see the module."""

    def __init__(self, build: Callable[..., QuerySet], *, index: str | None = None, **fields: Field | Many) -> None:
        if sum(isinstance(field, Many) for field in fields.values()) > 1:
            raise ValueError("a statement takes at most one Many value")
        self._build = build
        self._index = index
        self._fields = fields
        self._many = next((name for name, field in fields.items() if isinstance(field, Many)), None)
        self._compiled: dict[tuple[str, str, int], _Compiled] = {}
        self._lock = threading.Lock()

    def _compile(self, using: str, size: int = 1) -> _Compiled:
        connection = connections[using]
        key = (using, connection.vendor, size)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled
        with self._lock:
            first, second = _samples(self._fields, 0, size), _samples(self._fields, 1, size)
            query = self._build(**first).query
            compiler = query.get_compiler(using)
            sql, params = compiler.as_sql()
            params = list(params)
            positions: dict[str, list[int]] = {}
            for name, field in self._fields.items():
                other_sql, other = query_sql(self._build(**(first | {name: second[name]})), using)
                if other_sql != sql:
                    raise ValueError(f"the statement's SQL depends on the value of {name!r}")
                changed = [i for i, (a, b) in enumerate(zip(params, other, strict=True)) if a != b]
                many = isinstance(field, Many)
                if many:  # the list's values, each once, in the order given
                    at = {value: i for i, value in enumerate(params)}
                    prepared = [field.field.get_db_prep_value(v, connection, prepared=False) for v in first[name]]
                    order = [at.get(value) for value in prepared]
                    if None in order or sorted(order) != changed:
                        raise ValueError(f"each of {name!r}'s values must appear once among the parameters")
                    positions[name] = order  # type: ignore[assignment]
                elif len(changed) != 1:
                    raise ValueError(f"{name!r} must appear exactly once among the parameters ({changed})")
                else:
                    positions[name] = changed
            if self._index is not None:
                if query.select_related:
                    raise ValueError("a statement read through an index comes from one table: no select_related")
                sql = index_hinted(sql, query.model, self._index, connection)
            converters = compiler.get_converters([col for col, _, _ in compiler.select])
            compiled = self._compiled[key] = _Compiled(sql, params, positions, converters, _whole_rows_of(compiler))
        return compiled

    def _prepared(self, using: str, values: dict[str, Any]) -> tuple[_Compiled, list[Any]]:
        """The statement compiled for ``values``, and its parameters."""
        connection = connections[using]
        many = values[self._many] if self._many is not None else None
        compiled = self._compile(using, 1 if many is None else _list_size(len(many)))
        params = list(compiled.params)
        for name, positions in compiled.positions.items():
            field = self._fields[name]
            if isinstance(field, Many):
                prepare = field.field.get_db_prep_value
                padded = [*many, *[many[-1]] * (len(positions) - len(many))]  # type: ignore[index, misc]
                for position, value in zip(positions, padded, strict=True):
                    params[position] = prepare(value, connection, prepared=False)
            else:
                params[positions[0]] = field.get_db_prep_value(values[name], connection, prepared=False)
        return compiled, params

    def count(self, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> int:
        """How many rows the query has for ``values`` (counted by the database)."""
        compiled, params = self._prepared(using, values)
        with connections[using].cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({compiled.sql}) counted", params)  # noqa: S608 - the ORM's SQL
            return int(cursor.fetchone()[0])

    def rows(self, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> list[tuple[Any, ...]]:
        """The rows for ``values``, converted as the ORM converts them."""
        return self._rows(using, *self._prepared(using, values))

    def _rows(self, using: str, compiled: _Compiled, params: list[Any]) -> list[tuple[Any, ...]]:
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if not compiled.converters:
            return [tuple(row) for row in rows]
        converted = []
        for row in rows:
            row = list(row)
            for index, (functions, expression) in compiled.converters.items():
                value = row[index]
                for function in functions:
                    value = function(value, expression, connection)
                row[index] = value
            converted.append(tuple(row))
        return converted

    def objects(self, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> list[Any]:
        """The rows for ``values`` as model instances (``Model.from_db``, as the ORM makes
        them): for a query of the model's whole rows, without ``select_related``."""
        compiled, params = self._prepared(using, values)
        if compiled.model is None:
            raise TypeError("the statement does not select whole rows of one model")
        from_db, attnames = compiled.model.from_db, compiled.attnames
        return [from_db(using, attnames, row) for row in self._rows(using, compiled, params)]


def query_sql(queryset: QuerySet, using: str = DEFAULT_DB_ALIAS) -> tuple[str, list[Any]]:
    """The SQL and parameters the ORM would run for ``queryset``."""
    sql, params = queryset.query.get_compiler(using).as_sql()
    return sql, list(params)
