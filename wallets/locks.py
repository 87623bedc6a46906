"""The one place where ledger rows are locked, and the retry policy for lock failures.

Every lock is a queryset factory ordered by primary key with ``select_for_update``:
callers lock all the accounts a posting touches in one statement, so every transaction
takes its account locks in the same global order (ascending account id) and two
postings can never wait on each other in a cycle. ``FOR UPDATE OF`` is used where the
backend has it (MariaDB does not; these queries never join, so it locks the same rows).
SQLite has no row locks: its transactions begin IMMEDIATE, which serialises writers.

``retry_on_deadlock`` re-runs a service that owns its outer transaction when MariaDB
still reports a deadlock (1213) or a lock wait timeout (1205), e.g. between a posting
and a statement outside this module's ordering.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.models import QuerySet

from wallets.models import LedgerAccount

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DEADLOCK = 1213
LOCK_WAIT_TIMEOUT = 1205
RETRYABLE_ERRORS = frozenset({DEADLOCK, LOCK_WAIT_TIMEOUT})


def _for_update(queryset: QuerySet) -> QuerySet:
    of = ("self",) if connections[queryset.db].features.has_select_for_update_of else ()
    return queryset.select_for_update(of=of)


def ledger_accounts_lock(*, account_ids: Iterable[int]) -> QuerySet[LedgerAccount]:
    """Lock the given ledger accounts (their balance rows), in ascending id order."""
    return _for_update(LedgerAccount.objects.filter(pk__in=sorted(set(account_ids))).order_by("pk"))


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and bool(exc.args) and exc.args[0] in RETRYABLE_ERRORS


def retry_on_deadlock(
    func: Callable[P, R] | None = None, *, attempts: int = 5, base_delay: float = 0.005
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated service again (up to ``attempts`` times) after a deadlock or
    lock wait timeout, with jittered exponential backoff.

    Only the outermost transaction can be retried: when the call happens inside an
    atomic block, the error propagates to whoever owns that block.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if connections[DEFAULT_DB_ALIAS].in_atomic_block:
                return fn(*args, **kwargs)
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except OperationalError as exc:
                    if not is_retryable(exc) or attempt == attempts:
                        raise
                    delay = base_delay * (2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311
                    logger.info("%s: %s, retry %d/%d in %.3fs", fn.__qualname__, exc.args[0], attempt, attempts, delay)
                    time.sleep(delay)
            raise AssertionError("unreachable")

        return wrapper

    return decorate(func) if func is not None else decorate
