"""MySQL/MariaDB: Django's backend, without a ping per request for a connection in steady
use, and with one round trip less per transaction.

**Transactions.** Django begins an atomic block on a connection in autocommit by turning
autocommit off (``SET autocommit=0``, a round trip) and ends it with ``COMMIT`` or
``ROLLBACK`` and then ``SET autocommit=1`` (another). This backend begins it with ``START
TRANSACTION`` instead, which leaves the session's autocommit on: ``COMMIT`` or
``ROLLBACK`` ends the transaction, and turning autocommit back on needs nothing from the
server. Autocommit turned off by hand (``transaction.set_autocommit(False)``) is still
``SET autocommit=0``, and turned on again with a round trip. Every placement, matcher
batch and ledger posting is one transaction: nine round trips became eight for a group of
orders.

**Health checks.** With persistent connections and ``CONN_HEALTH_CHECKS`` (kootabase/settings.py), Django
pings the server (``is_usable()``: ``connection.ping()``) at the first query of every
HTTP request: its ``request_started`` receiver marks the connection unchecked, and the
request's first cursor checks it. Under load that is one more round trip per request, and
about 4 % of a web process's CPU, for a connection that answered a few milliseconds before.

This backend skips that ping when the connection ended a request cleanly less than
``DB_HEALTH_CHECK_AFTER_IDLE`` seconds ago (default 1.0; 0 pings every request, as Django
does). Cleanly: the request used the connection (a cursor or a transaction), no error
that may break a connection (``errors_occurred``: a database error other than
``DataError`` and ``IntegrityError``) happened on it during the request, not even one
that Django's end-of-request check then found harmless, and the connection was still open
after that check. A request that did not use the connection neither renews that time nor
spends it (the liveness probe makes no query: a connection idle behind probes is still
pinged). A skipped check spends the time: another check in the same request (after a
``close_old_connections()`` call) pings, as Django does. Outside HTTP requests (Celery
tasks, the matcher, management commands) no ``request_finished`` is sent, nothing is
stamped, and the backend is Django's.

The trade-off: a connection the server dropped within that second (a restart, a
failover, a ``KILL``, the network) is found by the request that uses it, not by a ping.
That request fails once with the database error, as it could before when the connection
dropped between the ping and the query; the error marks the connection errored, Django's
end-of-request check finds that it no longer answers and closes it, and the next request
on that thread connects anew. The server's own idle timeout (``wait_timeout``, 8 hours by
default) is far longer than the idle time allowed here.

Receiver order: ``request_finished`` calls its receivers in the order they were
connected. Django connects its end-of-request check (``django.db.close_old_connections``:
it closes a connection with errors that no longer answers, one past ``CONN_MAX_AGE`` and
one left with autocommit off) when ``django.db`` is imported, which importing this module
does first; ``note_request_end`` is connected below, so in a server it runs after that
check and stamps the state the check left. It does not depend on that order either
(Django's test client disconnects and reconnects ``close_old_connections`` around each
request, which puts it last): an error is remembered until the request's end even when
the check clears ``errors_occurred`` after a good ping, and a connection the check closes
after the stamp loses the stamp when it connects again.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.signals import request_finished
from django.db import connections
from django.db.backends.mysql import base as mysql

#: ``DB_HEALTH_CHECK_AFTER_IDLE`` when the settings do not define it.
DEFAULT_HEALTH_CHECK_AFTER_IDLE = 1.0


def health_check_after_idle() -> float:
    """Seconds after a clean request end from which a connection is pinged again; read at
    each check, so an override in a test applies at once."""
    return getattr(settings, "DB_HEALTH_CHECK_AFTER_IDLE", DEFAULT_HEALTH_CHECK_AFTER_IDLE)


class DatabaseWrapper(mysql.DatabaseWrapper):
    #: ``time.monotonic()`` when a request that used this connection ended cleanly; None
    #: once a check used it, after an error, and for a new connection.
    clean_request_end_at: float | None = None
    _transaction_started = False  # an atomic block began with START TRANSACTION (autocommit stays on)
    _used = False  # the connection was used since the last request end
    _failed = False  # errors_occurred was set since the last request end
    _errors_occurred = False

    @property
    def errors_occurred(self) -> bool:
        return self._errors_occurred

    @errors_occurred.setter
    def errors_occurred(self, value: bool) -> None:
        # Django clears the flag after a commit, a rollback or a good ping at the request's
        # end; the request still did not end cleanly.
        self._errors_occurred = value
        if value:
            self._failed = True

    def connect(self) -> None:
        self.clean_request_end_at = None
        self._transaction_started = False
        super().connect()

    def _start_transaction_under_autocommit(self) -> None:
        # Django calls this to begin an atomic block on a connection in autocommit.
        with self.wrap_database_errors:
            self.connection.query("START TRANSACTION")
        self._transaction_started = True

    def _set_autocommit(self, autocommit: bool) -> None:
        if autocommit and self._transaction_started:
            # The block's COMMIT or ROLLBACK has ended the transaction, and the session's
            # autocommit never went off (Django commits or rolls back, or drops the
            # connection, before it turns autocommit on again).
            self._transaction_started = False
            return
        super()._set_autocommit(autocommit)

    def close_if_health_check_failed(self) -> None:
        # Django calls this before every cursor and transaction start; it pings when
        # ``request_started`` left the connection unchecked (health_check_done False).
        self._used = True
        if not self.health_check_done and self.connection is not None and self.health_check_enabled:
            ended_at, self.clean_request_end_at = self.clean_request_end_at, None
            if ended_at is not None and time.monotonic() - ended_at < health_check_after_idle():
                self.health_check_done = True
                return
        super().close_if_health_check_failed()

    def note_request_end(self) -> None:
        """At the end of a request: stamp the connection if the request used it cleanly."""
        if self.connection is None or self._failed or self._errors_occurred:
            self.clean_request_end_at = None
        elif self._used:
            self.clean_request_end_at = time.monotonic()
        self._used = self._failed = False


def note_request_end(**kwargs: Any) -> None:
    for conn in connections.all(initialized_only=True):
        if isinstance(conn, DatabaseWrapper):
            conn.note_request_end()


request_finished.connect(note_request_end, dispatch_uid="kootabase.db_backends.mysql.note_request_end")
