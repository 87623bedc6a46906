"""The MySQL/MariaDB backend (kootabase/db_backends/mysql/base.py) begins an atomic block
with START TRANSACTION, one round trip less, and skips the per-request ping for a
connection that ended a request cleanly within ``DB_HEALTH_CHECK_AFTER_IDLE``.

The requests go through Django's test client, with one change: the client disconnects
``close_old_connections`` around the request signals (so a test's connection survives
its requests), which would also switch off Django's health checks, the thing under test.
The ``served`` fixture keeps that receiver connected, in the order a server has it (Django's
end-of-request check, then the stamp) or the reverse. The tests run on a real connection
(``transaction=True``: no test transaction around them)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection, connections
from django.test import Client

from kootabase import health
from kootabase.tests.servers import kill_connection

ROOT = Path(__file__).resolve().parents[2]
STAMP_UID = "kootabase.db_backends.mysql.note_request_end"


def test_the_settings_use_the_backend_for_mysql(tmp_path):
    code = (
        "from kootabase import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.DATABASE_VENDOR, s.DB_HEALTH_CHECK_AFTER_IDLE)"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "KOOTABASE_VAR_DIR": str(tmp_path),
        "DJANGO_ENV": "development",
        "DATABASE_URL": "mysql://root@127.0.0.1:3306/kootabase",
        "DB_HEALTH_CHECK_AFTER_IDLE": "0.25",
    }
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["kootabase.db_backends.mysql", "mysql", "0.25"]


# --- MariaDB/MySQL --------------------------------------------------------------------


@pytest.fixture(params=["check-then-stamp", "stamp-then-check"])
def served(request, monkeypatch) -> Iterator[Client]:
    """A test client whose requests run Django's start- and end-of-request connection checks."""
    from kootabase.db_backends.mysql.base import note_request_end

    def stand_in(**kwargs) -> None:
        """What the test client disconnects and reconnects instead of the real receiver."""

    monkeypatch.setattr("django.test.client.close_old_connections", stand_in)

    def connect_in_order(*receivers) -> None:
        request_finished.disconnect(close_old_connections)
        request_finished.disconnect(dispatch_uid=STAMP_UID)
        for receiver in receivers:
            uid = STAMP_UID if receiver is note_request_end else None
            request_finished.connect(receiver, dispatch_uid=uid)

    request_started.connect(close_old_connections)  # no-op when connected (the usual case)
    if request.param == "check-then-stamp":  # a server's order: django.db connects first
        connect_in_order(close_old_connections, note_request_end)
    else:  # the test client's order after its first request
        connect_in_order(note_request_end, close_old_connections)
    # Only the database check of /readyz: the request uses the connection once.
    monkeypatch.setattr(health, "CHECKS", {"database": health.check_database})
    # A connection of this test, not stamped by an earlier one.
    connection.close()
    connection.ensure_connection()
    yield Client()
    connect_in_order(close_old_connections, note_request_end)
    for signal in (request_started, request_finished):
        signal.disconnect(stand_in)


@pytest.fixture
def pings(monkeypatch) -> list[bool]:
    """Each health-check ping of the backend, with its answer."""
    from kootabase.db_backends.mysql.base import DatabaseWrapper

    answers: list[bool] = []
    real = DatabaseWrapper.is_usable

    def counting(self) -> bool:
        usable = real(self)
        answers.append(usable)
        return usable

    monkeypatch.setattr(DatabaseWrapper, "is_usable", counting)
    return answers


def ready(client: Client) -> dict:
    response = client.get("/readyz")
    return {**response.json(), "http_status": response.status_code}


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("idle", [0.0, 1.0])
def test_a_connection_in_steady_use_is_not_pinged(served, pings, settings, idle):
    """Two requests in a row: Django's backend (idle 0) pings at both, this one at the first."""
    from kootabase.db_backends.mysql.base import DatabaseWrapper

    assert isinstance(connections["default"], DatabaseWrapper)
    settings.DB_HEALTH_CHECK_AFTER_IDLE = idle
    assert ready(served)["http_status"] == 200
    assert pings == [True]
    assert ready(served)["http_status"] == 200
    assert pings == ([True, True] if idle == 0 else [True])
    assert ready(served)["http_status"] == 200  # each clean request end renews the time
    assert len(pings) == (3 if idle == 0 else 1)


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_after_the_idle_time_a_request_pings_and_replaces_a_dropped_connection(served, pings, settings):
    settings.DB_HEALTH_CHECK_AFTER_IDLE = 0.05
    assert ready(served)["http_status"] == 200
    assert pings == [True]
    time.sleep(0.1)
    assert ready(served)["http_status"] == 200
    assert pings == [True, True]
    first_id = connection.connection.thread_id()
    time.sleep(0.1)
    kill_connection(first_id)
    answer = ready(served)
    assert answer["http_status"] == 200, answer
    assert pings == [True, True, False]  # the ping found it dropped: a new connection served the request
    assert connection.connection.thread_id() != first_id


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_a_request_without_a_query_does_not_renew_the_time(served, pings, settings):
    """The liveness probe makes no query: a connection idle behind probes is still pinged."""
    settings.DB_HEALTH_CHECK_AFTER_IDLE = 0.5
    assert ready(served)["http_status"] == 200
    assert pings == [True]
    time.sleep(0.3)
    assert served.get("/healthz").status_code == 200
    time.sleep(0.3)
    assert served.get("/healthz").status_code == 200
    assert ready(served)["http_status"] == 200  # 0.6 s after the last query, 0.3 s after the last request
    assert pings == [True, True]


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_a_request_that_ended_with_a_database_error_is_not_stamped(served, pings, monkeypatch):
    assert ready(served)["http_status"] == 200
    assert pings == [True]

    def failing_check() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with monkeypatch.context() as patch:
        patch.setitem(health.CHECKS, "database", failing_check)
        answer = ready(served)
    assert answer["http_status"] == 503 and "ProgrammingError" in answer["details"]["checks"]["database"], answer
    # No ping at its start (the first request ended cleanly); Django's end-of-request check
    # pinged the connection with errors, found it good and kept it.
    assert pings == [True, True]
    assert ready(served)["http_status"] == 200
    assert pings == [True, True, True]  # not stamped: pinged
    assert ready(served)["http_status"] == 200
    assert pings == [True, True, True]  # that one ended cleanly


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_within_the_idle_time_fails_one_request(served, pings):
    """The trade-off: no ping finds it, the request that uses it does; the next one reconnects."""
    assert ready(served)["http_status"] == 200
    first_id = connection.connection.thread_id()
    kill_connection(first_id)
    answer = ready(served)
    assert answer["http_status"] == 503 and "OperationalError" in answer["details"]["checks"]["database"], answer
    assert pings == [True, False]  # the end-of-request check found it dropped and closed it
    assert connection.connection is None
    answer = ready(served)
    assert answer["http_status"] == 200, answer
    assert connection.connection.thread_id() != first_id
    assert pings == [True, False]  # a new connection needs no ping


# --- Transactions -------------------------------------------------------------------


def _round_trips(block) -> list[str]:
    """The driver's calls that go to the server while ``block()`` runs."""
    calls: list[str] = []
    names = {"query", "autocommit", "commit", "rollback", "ping"}

    def profile(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") in names:
            calls.append(arg.__name__)

    sys.setprofile(profile)
    try:
        block()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_an_atomic_block_begins_with_start_transaction_and_ends_with_its_commit():
    """Two round trips around the block's statements (START TRANSACTION, COMMIT) where
    Django's backend makes three (autocommit off, COMMIT, autocommit on); a rollback ends
    it as well; the session's autocommit stays on throughout; and autocommit turned off by
    hand is still the server's."""
    from django.db import transaction

    from accounts.models import User

    connection.ensure_connection()

    def committed():
        with transaction.atomic():
            User.objects.create(email="kept@example.com")

    assert _round_trips(committed) == ["query", "query", "commit"]  # START TRANSACTION, INSERT, COMMIT
    assert connection.get_autocommit() and connection.connection.get_autocommit()

    def rolled_back():
        with transaction.atomic():
            User.objects.create(email="gone@example.com")
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        rolled_back()
    assert set(User.objects.values_list("email", flat=True)) == {"kept@example.com"}
    # In autocommit again: a write outside a block is seen at once by another connection.
    User.objects.create(email="auto@example.com")
    side = connections.create_connection("default")
    try:
        with side.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM accounts_user WHERE email = 'auto@example.com'")
            assert cursor.fetchone()[0] == 1
    finally:
        side.close()

    transaction.set_autocommit(False)
    try:
        assert not connection.connection.get_autocommit()  # by hand: the server's autocommit is off
        User.objects.create(email="by-hand@example.com")
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    assert connection.connection.get_autocommit()
    assert not User.objects.filter(email="by-hand@example.com").exists()


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_a_transaction_begun_with_start_transaction_holds_its_row_locks_until_it_ends():
    import threading

    from django.db import transaction

    from accounts.models import User

    user = User.objects.create(email="locked@example.com")
    locked, waited = threading.Event(), []

    def other() -> None:
        try:
            assert locked.wait(10)
            started = time.monotonic()
            with transaction.atomic():
                User.objects.select_for_update().get(pk=user.pk)
            waited.append(time.monotonic() - started)
        finally:
            connections["default"].close()

    thread = threading.Thread(target=other)
    thread.start()
    with transaction.atomic():
        User.objects.select_for_update().get(pk=user.pk)
        locked.set()
        time.sleep(0.5)
        User.objects.filter(pk=user.pk).update(name="first")
    thread.join(10)
    assert waited and waited[0] >= 0.4
    assert User.objects.get(pk=user.pk).name == "first"


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_a_snapshot_read_sees_one_snapshot_in_a_transaction_begun_with_start_transaction():
    """The ledger audit's reads (``wallets.services.snapshot_read``) see one snapshot: a
    row another connection commits meanwhile stays out of them, where a plain block (READ
    COMMITTED) sees it. The level is set for the block's own transaction, which START
    TRANSACTION then begins (a transaction in progress could not change it)."""
    import threading

    from django.db import transaction

    from accounts.models import User
    from wallets.services import snapshot_read

    def create_elsewhere(email: str) -> None:  # on this thread's own connection, committed
        try:
            User.objects.create(email=email)
        finally:
            connections["default"].close()

    def counts_around_a_commit(block) -> tuple[int, int]:
        with block():
            before = User.objects.count()
            other = threading.Thread(target=create_elsewhere, args=(f"u{before}@example.com",))
            other.start()
            other.join(10)
            return before, User.objects.count()

    before, after = counts_around_a_commit(snapshot_read)
    assert after == before
    before, after = counts_around_a_commit(transaction.atomic)
    assert after == before + 1
