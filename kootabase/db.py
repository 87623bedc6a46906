"""Database helpers for hot paths, where building statements through the ORM costs more
than running them."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, Error, connections, models, router
from django.db.models.base import ModelState
from django.db.models.constants import OnConflict
from django.db.models.expressions import RawSQL
from django.db.models.signals import post_init, pre_init
from django.utils import timezone


class _NotRendered(Exception):
    """A value of a type ``_mysql_render`` leaves to the driver."""


def _mysql_render(connection: Any) -> Callable[[Any], str]:
    """MySQL/MariaDB: a function that writes a value as SQL text exactly as mysqlclient's
    ``Connection.literal`` does (strings through the server connection's own escaping, in
    its character set), for the types the model fields prepare: text, integers, Decimals,
    booleans and NULL (a choices enum member as its value). The driver's generic path
    costs several microseconds a value, which dominates a statement with thousands."""
    connection.ensure_connection()
    db = connection.connection
    encoding, string_literal = db.encoding, db.string_literal

    def render(value: Any) -> str:
        kind = type(value)
        if kind is int:
            return str(value)
        if kind is str:
            return string_literal(value.encode(encoding)).decode(encoding)
        if kind is Decimal:
            return format(value, "f")
        if value is None:
            return "NULL"
        if isinstance(value, str):  # a choices enum member: its text
            return string_literal(str.encode(value, encoding)).decode(encoding)
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int):
            return int.__repr__(value)
        raise _NotRendered(kind)

    return render


def values_for(connection: Any, key: Hashable, fields: Sequence[models.Field]) -> Values:
    """``Values(connection, fields)`` for the statement ``key`` names (its model and
    columns), made once per connection and kept while its link to the server is the same
    one (a value's text is escaped by that link). A statement run for one row at a time
    (a placement of one order) would otherwise make a converter per column every time."""
    raw = connection.connection
    made = getattr(connection, "_hot_values", None)
    if raw is None or made is None or made[0] is not raw:
        values = Values(connection, fields)  # connects first where the values are rendered
        connection._hot_values = (connection.connection, {key: values})
        return values
    values = made[1].get(key)
    if values is None:
        values = made[1][key] = Values(connection, fields)
    return values


def execute(cursor: Any, connection: Any, sql: str, params: Sequence[Any]) -> None:
    """Run ``sql`` with ``params``; on MySQL/MariaDB with the values written into the text by
    ``_mysql_render`` (what the driver would send, without its per-value cost)."""
    if connection.vendor == "mysql":
        try:
            text = sql % tuple(map(_mysql_render(connection), params))
        except _NotRendered:
            pass
        else:
            cursor.execute(text)  # every value escaped by the server connection, as the driver does
            return
    cursor.execute(sql, params)


_INTEGER_TYPES = frozenset(
    ("AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "PositiveBigIntegerField")
)
#: Fields whose prepared values ``_mysql_render`` writes (text, integers, Decimals,
#: booleans, NULL); a statement with any other field passes its values as parameters.
_RENDERED_TYPES = _INTEGER_TYPES | {
    "CharField",
    "TextField",
    "EmailField",
    "SlugField",
    "URLField",
    "GenericIPAddressField",
    "BooleanField",
    "DateField",
    "DateTimeField",
    "DecimalField",
    "MoneyField",
    "JSONField",
    "UUIDField",
}


@cache
def _prepared_by_django(field: models.Field) -> bool:
    """Whether the field's values are prepared for the database by Django's own code (a
    foreign key's by its target's too), not by a subclass that transforms them: then a
    ``str`` of a text field is stored as it is and ``None`` as NULL."""
    fields = (field, field.target_field) if hasattr(field, "target_field") else (field,)
    return all(
        getattr(type(f), name).__module__.startswith("django.")
        for f in fields
        for name in ("get_prep_value", "get_db_prep_value", "get_db_prep_save")
    )


_TEXT_TYPES = frozenset(("CharField", "TextField", "EmailField", "SlugField", "URLField"))


def _money_field() -> type[models.Field]:
    from wallets.models import MoneyField  # the apps' models import this module

    return MoneyField


def _decimal_text(value: Decimal, whole_digits: int, places: int) -> str | None:
    """The fixed-point text of a finite ``value`` whose spelling fits a column of
    ``whole_digits`` integer digits and ``places`` decimal places once its trailing zeros
    are dropped, else ``None`` (out of range, not finite or with more places: the field's
    own preparation decides). A value that fits is what ``MoneyField`` and Django's
    ``DecimalField`` store for it, without their checks' cost (thousands of values a
    matcher batch)."""
    if not value.is_finite():
        return None
    text = format(value, "f")
    dot = text.find(".")
    if (len(text) if dot < 0 else dot) - (text[0] == "-") > whole_digits:
        return None
    if dot >= 0 and len(text) - dot - 1 > places:  # arithmetic's trailing zeros, or too many places
        text = text.rstrip("0").removesuffix(".")
        if len(text) - dot - 1 > places:
            return None
    return text


def _internal_type(field: models.Field) -> str:
    """The type of the column's values (a foreign key's: its target's)."""
    return getattr(field, "target_field", field).get_internal_type()


class Values:
    """How a hot statement's values reach the database, converted column by column by
    the model fields themselves, so they are stored exactly as the ORM stores them.

    On MySQL/MariaDB each value becomes its SQL text (``_mysql_render``) as it is
    converted, with shortcuts that store the same value: an integer key, a plain string
    of a text field, a boolean, an amount that fits its column as written and a null are
    written as they are (where the field's preparation is Django's own or the ledger's
    ``MoneyField``), and a time is converted once when a statement repeats it (a batch's
    ``updated_at``); ``execute`` then runs the statement's text. Elsewhere values are the
    fields' prepared values, passed as parameters. ``values_for`` keeps a statement's
    ``Values`` for the connection."""

    def __init__(self, connection: Any, fields: Sequence[models.Field]) -> None:
        self.connection = connection
        self.rendered = connection.vendor == "mysql" and all(_internal_type(f) in _RENDERED_TYPES for f in fields)
        self._render = _mysql_render(connection) if self.rendered else None
        self.columns: list[Callable[[Any], Any]] = [self._column(field) for field in fields]

    def _column(self, field: models.Field) -> Callable[[Any], Any]:
        connection, render = self.connection, self._render
        prepare = field.get_db_prep_save
        if render is None:
            return lambda value: prepare(value, connection)
        kind = _internal_type(field)
        plain = _prepared_by_django(field)
        if kind in _INTEGER_TYPES:

            def integer(value: Any) -> str:
                if type(value) is int:
                    return str(value)
                if value is None and plain:
                    return "NULL"
                return render(prepare(value, connection))

            return integer
        if kind in ("MoneyField", "DecimalField") and (plain or isinstance(field, _money_field())):
            prepare_value = field.get_db_prep_value  # what get_db_prep_save calls for a plain value
            whole_digits, places = field.max_digits - field.decimal_places, field.decimal_places

            def decimal(value: Any) -> str:
                if type(value) is Decimal:
                    if not value:  # zero (or -0): valid, and stored as 0
                        return "0"
                    text = _decimal_text(value, whole_digits, places)
                    if text is not None:
                        return text
                elif value is None:
                    return "NULL"
                prepared = prepare_value(value, connection)
                return format(prepared, "f") if type(prepared) is Decimal else render(prepared)

            return decimal
        if kind in _TEXT_TYPES and plain:

            def text(value: Any) -> str:
                if type(value) is str:
                    return render(value)
                return "NULL" if value is None else render(prepare(value, connection))

            return text
        if kind == "BooleanField" and plain:

            def boolean(value: Any) -> str:
                if value is True:
                    return "1"
                if value is False:
                    return "0"
                return render(prepare(value, connection))

            return boolean
        if kind == "DateTimeField":
            last: list[Any] = [object(), ""]

            def moment(value: Any) -> str:
                if value is not last[0]:
                    last[0], last[1] = value, render(prepare(value, connection))
                return last[1]

            return moment
        return lambda value: render(prepare(value, connection))

    def execute(self, cursor: Any, sql: str, values: Sequence[Any]) -> None:
        """Run ``sql`` (``%s`` placeholders) with values converted by this object."""
        if self.rendered:
            cursor.execute(sql % tuple(values))  # each value is SQL text the connection escaped
        else:
            cursor.execute(sql, values)

    def send(self, cursor: Any, sql: str, values: Sequence[Any]) -> None:
        """Run a write whose outcome the caller does not read (no rows, no count): inside
        ``writes_streamed`` it is sent without waiting for the server, otherwise as
        ``execute`` runs it."""
        stream = _streams.get(id(self.connection))
        if stream is not None and self.rendered:
            stream.send(sql % tuple(values))
        else:
            self.execute(cursor, sql, values)


# --- Writes sent without waiting --------------------------------------------------------

#: The open ``writes_streamed`` blocks, by the ``id`` of their connection wrapper.
_streams: dict[int, _WriteStream] = {}


# mysql_set_server_option's values (MySQL's and MariaDB's client library).
_MULTI_STATEMENTS_ON, _MULTI_STATEMENTS_OFF = 0, 1


class _WriteStream:
    """One connection's writes sent without waiting (MySQL/MariaDB's protocol lets a client
    send a statement and read its outcome later), one at a time or, deferred, queued and
    sent together as one text; what is sent is read before anything else reaches the
    connection."""

    def __init__(self, connection: Any, *, deferred: bool = False) -> None:
        connection.ensure_connection()
        self.connection = connection
        self.db = connection.connection
        self.deferred = deferred
        self.queued: list[str] = []
        self.in_flight = 0  # statements sent whose outcome is not read yet

    def send(self, sql: str) -> None:
        if self.deferred:
            self.queued.append(sql)
            return
        self.wait()
        with self.connection.wrap_database_errors:
            self.db.send_query(sql.encode(self.db.encoding))
        self.in_flight = 1

    def launch(self) -> None:
        """Send the queued writes as one text of statements, without waiting for them. The
        connection takes several statements in one text only while they are sent and read."""
        self.wait()
        if not self.queued:
            return
        text, count, self.queued = ";\n".join(self.queued), len(self.queued), []
        with self.connection.wrap_database_errors:
            if count > 1:
                self.db.set_server_option(_MULTI_STATEMENTS_ON)
            try:
                self.db.send_query(text.encode(self.db.encoding))
            except BaseException:
                self._single_statements(count, quietly=True)
                raise
        self.in_flight = count

    def wait(self) -> None:
        """Read the outcome of what is in flight: the first error, if a statement failed
        (the server runs none after it), is raised here, as the driver would have raised
        it from ``execute``."""
        if not self.in_flight:
            return
        count, self.in_flight = self.in_flight, 0
        from django.db.backends.mysql.base import CursorWrapper

        with self.connection.wrap_database_errors:
            try:
                self.db.read_query_result()
                if self.db.field_count():
                    self.db.discard_result()
                while count > 1 and self.db.next_result() == 0:
                    if self.db.field_count():
                        self.db.discard_result()
            except self.connection.Database.OperationalError as exc:
                self._single_statements(count, quietly=True)
                if exc.args[0] in CursorWrapper.codes_for_integrityerror:  # as Django's cursor does
                    raise self.connection.Database.IntegrityError(*tuple(exc.args)) from None
                raise
            except BaseException:
                self._single_statements(count, quietly=True)
                raise
            self._single_statements(count)

    def _single_statements(self, count: int, *, quietly: bool = False) -> None:
        """One statement per text again, after ``count`` were sent in one; ``quietly``
        while another error is on its way (a connection that is gone fails this too)."""
        if count > 1:
            if quietly:
                with suppress(Exception):
                    self.db.set_server_option(_MULTI_STATEMENTS_OFF)
            else:
                self.db.set_server_option(_MULTI_STATEMENTS_OFF)

    def before_statement(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        self.launch()
        self.wait()
        return execute(sql, params, many, context)

    def attach(self) -> None:
        _streams[id(self.connection)] = self
        self.connection.execute_wrappers.append(self.before_statement)

    def detach(self) -> None:
        """Stop streaming; anything still in flight is read first, its error suppressed
        (the caller is already raising one, or rolls back): the connection must be in step
        for whatever comes next. Queued writes not launched are dropped."""
        self.queued = []
        try:
            with suppress(Error):
                self.wait()
        finally:
            self.connection.execute_wrappers.remove(self.before_statement)
            del _streams[id(self.connection)]


@contextmanager
def writes_streamed(alias: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Inside the block, the writes that ``Values.send`` runs go to MySQL/MariaDB without
    waiting for the server: the caller's Python work (rendering the next statement, the
    events of the batch) goes on while the server runs the statement before. Statements
    stay in their order, one at a time: any other statement on the connection, and the
    end of the block, first wait for the one in flight, and its error (a deadlock, a
    constraint) is raised there, inside the block. For a caller whose transaction is
    rolled back as a whole on any error. Elsewhere (SQLite, PostgreSQL), and nested,
    it changes nothing."""
    connection = connections[alias]
    if connection.vendor != "mysql" or id(connection) in _streams:
        yield
        return
    stream = _WriteStream(connection)
    stream.attach()
    try:
        yield
        stream.wait()
    finally:
        stream.detach()


class WritesInFlight:
    """The writes of a transaction sent to MySQL/MariaDB as one text, and read later: the
    Python work of the caller, and another connection's, go on meanwhile (the matcher works
    out its next batch while the server writes the one before). See ``writes_deferred``."""

    def __init__(self, stream: _WriteStream | None) -> None:
        self._stream = stream

    def launch(self) -> None:
        """Send what is queued, without waiting for the server."""
        if self._stream is not None:
            self._stream.launch()

    def wait(self) -> None:
        """Wait for what was sent; raises the error of the statement that failed."""
        if self._stream is not None:
            self._stream.wait()

    def close(self) -> None:
        """The connection back to normal (see ``_WriteStream.detach``): after ``wait``, or
        on the way out of a failure, before the transaction's rollback."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.detach()


def writes_deferred(alias: str = DEFAULT_DB_ALIAS) -> WritesInFlight:
    """Until ``close()``, the writes that ``Values.send`` runs on MySQL/MariaDB are queued;
    ``launch()`` sends them as one text of statements (one round trip, and the server runs
    them back to back) without waiting, ``wait()`` reads their outcome. Order is kept: any
    other statement on the connection first sends the queue and waits for it, and the
    caller must ``wait()`` before the transaction ends. The first error is raised by
    ``wait()`` (or that statement); the server runs none of the writes after it, and the
    caller rolls the whole transaction back. Elsewhere (SQLite, PostgreSQL), and inside
    ``writes_streamed``, writes run as they come and the handle does nothing."""
    connection = connections[alias]
    if connection.vendor != "mysql" or id(connection) in _streams:
        return WritesInFlight(None)
    stream = _WriteStream(connection, deferred=True)
    stream.attach()
    return WritesInFlight(stream)


#: Rows per ``UPDATE ... CASE`` statement of ``rows_update``. The server finds a row's value
#: by searching the CASE's WHEN list in order, so a statement's cost grows with the square
#: of its rows: 200 keeps that search below the cost of the row itself.
UPDATE_ROWS_PER_STATEMENT = 200


def rows_update(
    model: type[models.Model],
    objs: Sequence[models.Model],
    fields: Sequence[str],
    *,
    before: Mapping[Any, Sequence[Any]] | None = None,
) -> None:
    """Write ``fields`` of every object in ``objs`` with one ``UPDATE ... CASE`` statement per
    chunk — what ``QuerySet.bulk_update`` does, without resolving an ORM expression per value
    (which dominates the cost for hundreds of rows). Values are converted by the model fields
    themselves (``get_db_prep_save``), so they are stored exactly as the ORM would store them.
    The rows are written in primary-key order, chunk after chunk, so they are locked in the
    same order as one statement over all of them would lock them.

    ``before`` (primary key -> the values of ``fields`` as the row holds them now, for the
    caller that is the only writer of those columns) leaves out the values that did not
    change: their row keeps its column (``ELSE``), and a column no row changed is not
    written at all."""
    if not objs:
        return
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    meta = model._meta
    pk = quote(meta.pk.column)
    columns = [meta.get_field(name) for name in fields]
    per_row = 2 * len(columns) + 1
    limit = connection.features.max_query_params or 60000
    size = max(1, min(UPDATE_ROWS_PER_STATEMENT, (limit - 1) // per_row))
    objs = sorted(objs, key=lambda obj: obj.pk)
    values = values_for(connection, ("update", model, tuple(fields)), [meta.pk, *columns])
    key, converters = values.columns[0], values.columns[1:]
    unknown: tuple[Any, ...] = ()
    with connection.cursor() as cursor:
        for start in range(0, len(objs), size):
            chunk = objs[start : start + size]
            ids = [key(obj.pk) for obj in chunk]
            olds = [before.get(obj.pk, unknown) for obj in chunk] if before is not None else None
            params: list[Any] = []
            assignments = []
            for i, field in enumerate(columns):
                column, attname, convert = quote(field.column), field.attname, converters[i]
                rows = [(pk, getattr(obj, attname)) for pk, obj in zip(ids, chunk, strict=True)]
                if olds is not None:
                    rows = [row for row, old in zip(rows, olds, strict=True) if not old or row[1] != old[i]]
                if not rows:
                    continue
                whens = " ".join(["WHEN %s THEN %s"] * len(rows))
                otherwise = f" ELSE {column}" if len(rows) < len(chunk) else ""
                assignments.append(f"{column} = CASE {pk} {whens}{otherwise} END")
                for row_key, value in rows:
                    params += [row_key, convert(value)]
            if not assignments:
                continue
            params += ids
            values.send(  # identifiers come from the model and are quoted; every value is converted
                cursor,
                f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
                f"WHERE {pk} IN ({', '.join(['%s'] * len(ids))})",
                params,
            )


@lru_cache(maxsize=128)
def _update_where_sql(alias: str, table: str, assigned: tuple[str, ...], matched: tuple[str, ...]) -> str:
    quote = connections[alias].ops.quote_name
    assignments = ", ".join(f"{quote(column)} = %s" for column in assigned)
    conditions = " AND ".join(f"{quote(column)} = %s" for column in matched)
    return f"UPDATE {quote(table)} SET {assignments} WHERE {conditions}"  # noqa: S608 - quoted model identifiers


def row_update_where(model: type[models.Model], *, where: Mapping[str, Any], values: Mapping[str, Any]) -> int:
    """``model.objects.filter(**where).update(**values)`` for conditions that are equalities
    and values that are plain values, by attribute name (``market_id``), without building
    the ORM's query on every call: its SQL is made once per shape, and the values are
    converted by the fields themselves (``Values``). Returns how many rows matched, as the
    ORM's ``update`` does (on MySQL/MariaDB Django's connection counts rows found, not
    changed). For a small statement run every matcher batch (a fence, a state row)."""
    if not where or any(value is None for value in where.values()):
        raise ValueError("row_update_where needs conditions, none of them on NULL")
    alias = router.db_for_write(model)
    connection = connections[alias]
    by_attname = {field.attname: field for field in model._meta.concrete_fields}
    try:
        fields = [by_attname[name] for name in (*values, *where)]
    except KeyError as exc:
        raise TypeError(f"{model.__name__} has no column attribute {exc.args[0]!r}") from None
    converted = values_for(connection, ("update where", model, tuple(values), tuple(where)), fields)
    params = [
        convert(value) for convert, value in zip(converted.columns, (*values.values(), *where.values()), strict=True)
    ]
    sql = _update_where_sql(
        alias,
        model._meta.db_table,
        tuple(by_attname[name].column for name in values),
        tuple(by_attname[name].column for name in where),
    )
    with connection.cursor() as cursor:
        converted.execute(cursor, sql, params)
        return cursor.rowcount


@lru_cache(maxsize=256)
def _insert_sql(
    alias: str, table: str, columns: tuple[str, ...], rows: int, returning: str | None, suffix: str = ""
) -> str:
    connection = connections[alias]
    quote = connection.ops.quote_name
    row = f"({', '.join(['%s'] * len(columns))})"
    sql = f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) VALUES {', '.join([row] * rows)}"  # noqa: S608 - quoted model identifiers; values are parameters
    if suffix:
        sql = f"{sql} {suffix}"
    return f"{sql} RETURNING {quote(returning)}" if returning else sql


def rows_insert(
    model: type[models.Model], objs: Sequence[models.Model], *, keys: bool = True, now: datetime | None = None
) -> None:
    """Insert ``objs`` (new rows of a model with an auto primary key) with multi-row
    ``INSERT`` statements built once per shape — what ``QuerySet.bulk_create`` does
    without compiling an ORM expression per value. Values come from the fields themselves
    (``pre_save``, ``get_db_prep_save``, see ``Values``); ``auto_now``/``auto_now_add``
    times are one time for the call (``now``, when the caller has used it already). Where
    the database returns inserted rows (MariaDB 10.5+, SQLite, PostgreSQL) each object
    gets its primary key, as with ``bulk_create``; ``keys=False`` is for a caller that
    does not use them: the objects get none, and inside ``writes_streamed`` the
    statements are sent without waiting."""
    _insert(model, objs, keys=keys, now=now)


def rows_upsert(
    model: type[models.Model],
    objs: Sequence[models.Model],
    *,
    unique_fields: Sequence[str],
    update_fields: Sequence[str],
) -> None:
    """Insert ``objs`` or, where a row with the same ``unique_fields`` exists, set its
    ``update_fields`` — ``bulk_create(update_conflicts=True)`` without compiling an ORM
    expression per value (MySQL/MariaDB's ON DUPLICATE KEY UPDATE goes by every unique
    key of the table, as there). The objects get no primary key."""
    if not objs:
        return
    connection = connections[router.db_for_write(model)]
    meta = model._meta
    suffix = connection.ops.on_conflict_suffix_sql(
        None,
        OnConflict.UPDATE,
        [meta.get_field(name).column for name in update_fields],
        [meta.get_field(name).column for name in unique_fields],
    )
    _insert(model, objs, suffix=suffix)


#: ``pre_save`` methods that return the attribute as it is (times other than ``auto_now``).
_PLAIN_PRE_SAVE = frozenset((models.Field.pre_save, models.DateField.pre_save, models.DateTimeField.pre_save))


def _insert(
    model: type[models.Model],
    objs: Sequence[models.Model],
    *,
    suffix: str = "",
    keys: bool = True,
    now: datetime | None = None,
) -> None:
    if not objs:
        return
    alias = router.db_for_write(model)
    connection = connections[alias]
    meta = model._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    columns = tuple(field.column for field in fields)
    returning = meta.pk.column if keys and connection.features.can_return_rows_from_bulk_insert and not suffix else None
    limit = connection.features.max_query_params or 60000
    size = max(1, limit // len(fields))
    values = values_for(connection, ("insert", model), fields)
    # One time for every ``auto_now``/``auto_now_add`` value of the call, as a database
    # default gives the rows of one statement; a field with a ``pre_save`` of its own
    # gets its value from it, as ``bulk_create`` does.
    now = now or timezone.now()
    plain: list[tuple[str, Callable[[Any], Any]]] = []
    own: list[models.Field] = []
    for field, convert in zip(fields, values.columns, strict=True):
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for obj in objs:
                setattr(obj, field.attname, now)
        elif type(field).pre_save not in _PLAIN_PRE_SAVE:
            own.append(field)
        plain.append((field.attname, convert))
    with connection.cursor() as cursor:
        for start in range(0, len(objs), size):
            chunk = objs[start : start + size]
            for obj in chunk:
                for field in own:
                    setattr(obj, field.attname, field.pre_save(obj, True))
            params = [convert(getattr(obj, attname)) for obj in chunk for attname, convert in plain]
            sql = _insert_sql(alias, meta.db_table, columns, len(chunk), returning, suffix)
            if returning:
                values.execute(cursor, sql, params)
                for obj, (pk,) in zip(chunk, cursor.fetchall(), strict=True):
                    obj.pk = pk
            else:
                values.send(cursor, sql, params)
            if not suffix:
                for obj in chunk:
                    obj._state.adding, obj._state.db = False, alias


def rows_delete(model: type[models.Model], pks: Sequence[Any]) -> int:
    """Delete rows by primary key in one statement, without the ORM's collection of
    related rows and its signals: for rows nothing refers to yet, such as rows this
    transaction has just written. Returns how many were deleted."""
    return model._base_manager.filter(pk__in=list(pks))._raw_delete(router.db_for_write(model))


@lru_cache(maxsize=64)
def _attnames(cls: type[models.Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in cls._meta.concrete_fields)


@lru_cache(maxsize=256)
def _loaded(cls: type[models.Model], field_names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The attributes a partial row's values go to, in the order ``Model.from_db`` gives
    them out (the model's field order); None when ``field_names`` are not attributes."""
    attnames = _attnames(cls)
    if not set(field_names) <= set(attnames):
        return None
    return tuple(name for name in attnames if name in field_names)


def model_from_db(cls: type[models.Model], db: str, field_names: Sequence[str], values: Sequence[Any]) -> Any:
    """``Model.from_db`` for a model read by the thousand (the matcher's orders, the
    ledger's accounts): a row becomes an instance by filling its ``__dict__``, which is
    what ``Model.__init__`` ends with for positional values, without its per-field work.
    A partial row (an account without its balance) leaves the other fields deferred, as
    Django does. While a ``pre_init``/``post_init`` receiver is connected, Django's own
    path."""
    if pre_init.receivers or post_init.receivers:
        return models.Model.from_db.__func__(cls, db, field_names, values)
    if len(values) == len(cls._meta.concrete_fields):
        names: tuple[str, ...] | None = _attnames(cls)
    else:
        names = _loaded(cls, tuple(field_names))
        if names is None or len(names) != len(values):
            return models.Model.from_db.__func__(cls, db, field_names, values)
    new = cls.__new__(cls)
    new.__dict__.update(zip(names, values, strict=True))
    state = new._state = ModelState()
    state.adding, state.db = False, db
    return new


@lru_cache(maxsize=64)
def _defaults(
    cls: type[models.Model],
) -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...], dict[str, tuple[str, str, str]]]:
    """A model's default attribute values: the constant ones and the callables to call;
    and its forward relations by name: (attribute, the related model's key attribute,
    the instance cache's key)."""
    constant: dict[str, Any] = {}
    called: list[tuple[str, Callable[[], Any]]] = []
    related: dict[str, tuple[str, str, str]] = {}
    for field in cls._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            called.append((field.attname, field.default))
        else:
            constant[field.attname] = field.get_default()
        if field.many_to_one or field.one_to_one:
            related[field.name] = (field.attname, field.target_field.attname, field.cache_name)
    return constant, tuple(called), related


def model_build(cls: type[models.Model], values: Mapping[str, Any]) -> Any:
    """``cls(**values)`` for a model built by the thousand (the matcher's trades, the
    ledger's entries, a batch's orders), ``values`` by attribute name (``market_id``) or,
    for a relation, by name with the related instance (``market``), which is kept as
    the constructor keeps it: the fields not given get their defaults, without
    ``Model.__init__``'s per-field work. While a ``pre_init``/``post_init`` receiver is
    connected, Django's own path."""
    if pre_init.receivers or post_init.receivers:
        return cls(**values)
    constant, called, related = _defaults(cls)
    new = cls.__new__(cls)
    attributes = new.__dict__
    attributes.update(constant)
    state = new._state = ModelState()
    given = dict(values)
    for name in values.keys() & related.keys():
        instance = given.pop(name)
        attname, key, cache = related[name]
        if instance is not None and not isinstance(instance, models.Model):
            raise TypeError(f"{cls.__name__}.{name} takes an instance, not {instance!r}")
        given[attname] = None if instance is None else getattr(instance, key)
        state.fields_cache[cache] = instance
    unknown = given.keys() - constant.keys() - {name for name, _ in called}
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    for name, default in called:
        if name not in given:
            attributes[name] = default()
    attributes.update(given)
    return new


def sql_using_index(queryset: models.QuerySet, index: str) -> tuple[str, tuple[Any, ...]]:
    """``queryset``'s SQL and parameters, with MariaDB/MySQL told to read its table through
    ``index`` (``FORCE INDEX``; one of the model's ``Meta.indexes``). Other backends get
    the statement as it is.

    For a queue kept in a table (pending orders, cancel requests): the optimizer prices
    ``ORDER BY id LIMIT n`` as a walk of the primary key that soon finds ``n`` matching
    rows, and two indexes with the same leading column by their statistics. Both guesses
    fail exactly when a backlog makes the queue a large part of the table, and then each
    poll reads the table's whole history instead of the ``n`` rows it wants."""
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    return index_hinted(sql, queryset.model, index, connections[queryset.db]), tuple(params)


def index_hinted(sql: str, model: type[models.Model], index: str, connection: Any) -> str:
    """``sql`` (one table's statement) with MariaDB/MySQL told to read ``model``'s table
    through ``index``; see ``sql_using_index``."""
    if index not in {i.name for i in model._meta.indexes}:
        raise ValueError(f"{model.__name__} has no index {index!r}")
    if connection.vendor != "mysql":
        return sql
    quote = connection.ops.quote_name
    table = f"FROM {quote(model._meta.db_table)}"
    if sql.count(table) != 1:
        raise ValueError(f"cannot place an index hint in {sql!r}")
    return sql.replace(table, f"{table} FORCE INDEX ({quote(index)})")


def exists_using_index(queryset: models.QuerySet, index: str) -> models.Expression:
    """``EXISTS`` of ``queryset`` as an expression to annotate with, read through ``index``
    (see ``sql_using_index``)."""
    sql, params = sql_using_index(queryset.order_by().values("pk"), index)
    return RawSQL(f"EXISTS({sql})", params, output_field=models.BooleanField())  # noqa: S611 - the ORM's SQL
