"""The ledger's hot statements, built once per shape and executed with plain cursors.

``ledger_post_batch`` runs the same few statements for every posting: insert the
entries, lock the balance rows, insert the legs, update the balances. Building them
through the ORM costs more CPU than the database spends on them, so this module writes
them once per shape (statement kind and row count) and caches the SQL. Values are
converted by the model fields themselves (``kootabase.db.Values``), so they are stored
exactly as the ORM would store them; the locking statement is the one
``wallets.locks.ledger_accounts_lock`` builds, compiled by the ORM and cached.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.constants import OnConflict
from django.utils import timezone

from kootabase.db import UPDATE_ROWS_PER_STATEMENT, execute, values_for
from wallets.locks import ledger_accounts_lock
from wallets.models import JournalEntry, LedgerAccount, LedgerLeg


def _connection() -> Any:
    return connections[DEFAULT_DB_ALIAS]


def _chunks(rows: Sequence[Any], columns: int) -> Iterable[Sequence[Any]]:
    """Split multi-row statements where the backend caps parameters (SQLite: 999)."""
    limit = _connection().features.max_query_params
    size = len(rows) if not limit else max(1, limit // columns)
    for start in range(0, len(rows), size or 1):
        yield rows[start : start + size]


@lru_cache(maxsize=256)
def _lock_sql(vendor: str, count: int) -> str:
    sql, _ = (
        ledger_accounts_lock(account_ids=range(count))
        .values_list("pk", "balance", "user_id", "currency_id", "kind")
        .query.get_compiler(DEFAULT_DB_ALIAS)
        .as_sql()
    )
    return sql


def accounts_lock(account_ids: Iterable[int]) -> dict[int, tuple[Decimal, tuple[int | None, int, str]]]:
    """Lock the balance rows (ascending id, one statement); returns id -> (balance, (user
    id, currency id, kind))."""
    connection = _connection()
    ids = sorted(set(account_ids))
    field = LedgerAccount._meta.get_field("balance")
    with connection.cursor() as cursor:
        execute(cursor, connection, _lock_sql(connection.vendor, len(ids)), ids)
        return {
            pk: (field.from_db_value(balance, None, connection), (user_id, currency_id, kind))
            for pk, balance, user_id, currency_id, kind in cursor
        }


@lru_cache(maxsize=256)
def _insert_sql(
    vendor: str,
    table: str,
    columns: tuple[str, ...],
    rows: int,
    returning: tuple[str, ...] | str | None,
    skip_conflicts: bool = False,
) -> str:
    ops = _connection().ops
    quote = ops.quote_name
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    insert = ops.insert_statement(on_conflict=OnConflict.IGNORE if skip_conflicts else None)
    sql = f"{insert} {quote(table)} ({', '.join(quote(c) for c in columns)}) VALUES {', '.join([row] * rows)}"
    if skip_conflicts:
        sql += ops.on_conflict_suffix_sql([], OnConflict.IGNORE, None, None)
    if isinstance(returning, str):
        returning = (returning,)
    return f"{sql} RETURNING {', '.join(quote(name) for name in returning)}" if returning else sql


_ENTRY_COLUMNS = ("kind", "reference", "idempotency_key", "created_at")


def entries_insert(entries: list[JournalEntry], *, skip_stored_keys: bool = False) -> set[int]:
    """Insert the entries and set their ids (one statement where the backend returns ids).

    With ``skip_stored_keys`` an entry whose idempotency key is stored already (by an
    earlier transaction, or a concurrent one that committed first: the insert waits for
    it) is left out without an error, and its index is returned: no savepoint is needed
    around the insert to survive the duplicate. (The statement ignores conflicts, which
    MySQL's ``INSERT IGNORE`` and SQLite's ``OR IGNORE`` extend to values that do not
    fit a column: ``services._validate`` has refused those before.)"""
    connection = _connection()
    skipped: set[int] = set()
    if not entries:
        return skipped
    now = timezone.now()
    created_at = JournalEntry._meta.get_field("created_at").get_db_prep_value(now, connection)
    table = JournalEntry._meta.db_table
    if not connection.features.can_return_rows_from_bulk_insert:  # MySQL: one insert per entry
        sql = _insert_sql(connection.vendor, table, _ENTRY_COLUMNS, 1, None, skip_stored_keys)
        for index, entry in enumerate(entries):
            with connection.cursor() as cursor:
                cursor.execute(sql, [entry.kind, entry.reference, entry.idempotency_key, created_at])
                if cursor.rowcount == 0:
                    skipped.add(index)
                    continue
                entry.pk, entry.created_at = cursor.lastrowid, now
            entry._state.adding = False
        return skipped
    offset = 0
    for chunk in _chunks(entries, len(_ENTRY_COLUMNS)):
        params: list[Any] = []
        for entry in chunk:
            params += [entry.kind, entry.reference, entry.idempotency_key, created_at]
        sql = _insert_sql(
            connection.vendor, table, _ENTRY_COLUMNS, len(chunk), ("id", "idempotency_key"), skip_stored_keys
        )
        with connection.cursor() as cursor:
            execute(cursor, connection, sql, params)
            rows = cursor.fetchall()
        # The rows come back in the order inserted; an entry without its row was skipped
        # (keys are unique in a batch, and an entry without a key is never skipped).
        returned = iter(rows)
        row = next(returned, None)
        for index, entry in enumerate(chunk, start=offset):
            if row is None or row[1] != entry.idempotency_key:
                if not skip_stored_keys or entry.idempotency_key is None:
                    raise RuntimeError("the database returned fewer entries than were inserted")
                skipped.add(index)
                continue
            entry.pk, entry.created_at = row[0], now
            entry._state.adding = False
            row = next(returned, None)
        offset += len(chunk)
    return skipped


def legs_insert(legs: list[tuple[int, int, Decimal, Decimal]]) -> None:
    """Insert legs given as (entry id, account id, amount, balance after)."""
    connection = _connection()
    meta = LedgerLeg._meta
    names = ("entry", "account", "amount", "balance_after")
    values = values_for(connection, "ledger legs", [meta.get_field(name) for name in names])
    entry, account, amount, balance_after = values.columns
    columns = tuple(meta.get_field(name).column for name in names)
    for chunk in _chunks(legs, len(columns)):
        params: list[Any] = []
        for row in chunk:
            params += [entry(row[0]), account(row[1]), amount(row[2]), balance_after(row[3])]
        with connection.cursor() as cursor:
            values.send(cursor, _insert_sql(connection.vendor, meta.db_table, columns, len(chunk), None), params)


@lru_cache(maxsize=256)
def _update_sql(vendor: str, rows: int) -> str:
    quote = _connection().ops.quote_name
    table, pk, balance = quote(LedgerAccount._meta.db_table), quote("id"), quote("balance")
    cases = " ".join(["WHEN %s THEN %s"] * rows)
    ids = ", ".join(["%s"] * rows)
    return f"UPDATE {table} SET {balance} = CASE {pk} {cases} END WHERE {pk} IN ({ids})"  # noqa: S608 - as above


def balances_update(balances: dict[int, Decimal]) -> None:
    """Write the new balances of rows this transaction has locked, in id order, at most
    ``UPDATE_ROWS_PER_STATEMENT`` per statement (the server searches a CASE's WHEN list
    row by row: one statement over a big batch costs the square of its rows)."""
    connection = _connection()
    meta = LedgerAccount._meta
    values = values_for(connection, "ledger balances", [meta.pk, meta.get_field("balance")])
    key, balance_of = values.columns
    items = sorted(balances.items())
    for start in range(0, len(items), UPDATE_ROWS_PER_STATEMENT):
        chunk = [(key(pk), balance_of(balance)) for pk, balance in items[start : start + UPDATE_ROWS_PER_STATEMENT]]
        params: list[Any] = []
        for row in chunk:
            params += row
        params += [pk for pk, _ in chunk]
        with connection.cursor() as cursor:
            values.send(cursor, _update_sql(connection.vendor, len(chunk)), params)


@lru_cache(maxsize=256)
def _row_insert_sql(vendor: str, label: str) -> tuple[str, tuple[Any, ...]]:
    from django.apps import apps

    meta = apps.get_model(label)._meta
    fields = tuple(f for f in meta.concrete_fields if not f.primary_key and not f.generated)
    return _insert_sql(vendor, meta.db_table, tuple(f.column for f in fields), 1, None), fields


def row_insert(obj: Any) -> Any:
    """Insert one new model row (as ``Model.save(force_insert=True)`` would, without the
    ORM's per-call query building) and set its primary key. No signals are sent."""
    connection = _connection()
    sql, fields = _row_insert_sql(connection.vendor, obj._meta.label)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        obj.pk = cursor.lastrowid
    obj._state.adding = False
    obj._state.db = DEFAULT_DB_ALIAS
    return obj


@lru_cache(maxsize=256)
def _accounts_select_sql(vendor: str, owners: int, currencies: int, kinds: int) -> str:
    quote = _connection().ops.quote_name

    def column_in(column: str, n: int) -> str:
        return f"{quote(column)} IN ({', '.join(['%s'] * n)})"

    return (
        f"SELECT {quote('id')}, {quote('user_id')}, {quote('currency_id')}, {quote('kind')} "  # noqa: S608 - see module doc
        f"FROM {quote(LedgerAccount._meta.db_table)} WHERE {column_in('owner_key', owners)} "
        f"AND {column_in('currency_id', currencies)} AND {column_in('kind', kinds)}"
    )


def accounts_select(owner_keys: set[int], currency_ids: set[int], kinds: set[str]) -> list[LedgerAccount]:
    """Ledger accounts of any of the owners (0: the platform), currencies and kinds; the
    balance is not read (it is only read under lock, by ``accounts_lock``)."""
    connection = _connection()
    sql = _accounts_select_sql(connection.vendor, len(owner_keys), len(currency_ids), len(kinds))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*sorted(owner_keys), *sorted(currency_ids), *sorted(kinds)])
        rows = cursor.fetchall()
    names = ["id", "user_id", "currency_id", "kind"]
    return [LedgerAccount.from_db(DEFAULT_DB_ALIAS, names, row) for row in rows]
