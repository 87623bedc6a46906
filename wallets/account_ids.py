"""The ids of ledger accounts, remembered per process.

A ledger account is never deleted and never changes owner, currency or kind, so the id
of (owner, currency, kind) can be kept once it is known: a transfer then finds both
accounts without a query, and a posting can lock the *other* balance of each user and
currency it touches (the locked one beside an available one, and back) in the same
statement as the balances it writes, so its balance events carry both values exact as
of the commit instead of reading them back afterwards (``wallets.events``).

Ids are remembered only once the transaction that read (or created) them has committed,
so a rolled-back creation is never remembered; every posting checks the rows it locked
against the owner, currency and kind it expected (``services._apply``), so a stale id
(a database restored under a running process) is refused, and the cache dropped, before
anything is written. At most ``LIMIT`` ids are kept; past that the cache starts over.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import DEFAULT_DB_ALIAS, transaction

from kootabase.catalog import on_forget

LIMIT = 100_000  # about 20 MB at the most

#: (user id or None for the platform, currency id, account kind) -> account id
_ids: dict[tuple[int | None, int, str], int] = {}


def get(key: tuple[int | None, int, str]) -> int | None:
    return _ids.get(key)


def remember_after_commit(
    accounts: Iterable[tuple[tuple[int | None, int, str], int]], using: str = DEFAULT_DB_ALIAS
) -> None:
    """Remember these (key, id) pairs once the current transaction commits."""
    pairs = list(accounts)
    if pairs:
        transaction.on_commit(lambda: _remember(pairs), using=using)


def _remember(pairs: list[tuple[tuple[int | None, int, str], int]]) -> None:
    if len(_ids) + len(pairs) > LIMIT:
        _ids.clear()
    _ids.update(pairs)


def forget() -> None:
    _ids.clear()


on_forget(forget)
