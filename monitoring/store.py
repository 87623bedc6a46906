"""Where the monitoring records of every process meet.

The web tier runs several processes (``uvicorn --workers N``, several pods) and the Celery
workers run elsewhere, so request counters, worker heartbeats and WebSocket counts cannot
live in one process's memory. They live here, in one of two backends chosen by the settings:

- **Redis** (``MONITORING_REDIS_URL``, by default ``REDIS_URL``): counters are Redis hashes
  incremented with ``HINCRBY`` in one pipelined round trip; every process and pod adds to
  the same totals, so any web process answers ``/metrics`` for the whole deployment.
- **SQLite** (embedded, no Redis): one file under ``var/`` (``MONITORING_STORE_PATH``) that
  the processes of the machine share, apart from the main database so that recording a
  request never waits for the matcher's write lock. ``":memory:"`` keeps it in the
  process (the test suite).

Two kinds of record:

- *counters*: named hashes of integer fields, incremented atomically; a name may be given
  a lifetime (the per-minute totals), refreshed by each increment;
- *presence*: per group, one record per member (a Celery worker, a web process) that
  expires unless its member writes it again; readers see the live ones only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from django.conf import settings

REDIS_PREFIX = "kootabase:monitoring:"
PRESENCE_GROUP_TTL = 7 * 24 * 3600  # a presence group nobody writes any more disappears after a week
PURGE_EVERY = 60.0  # seconds between deletions of expired SQLite rows


class Store(Protocol):
    def increment(self, counts: Mapping[str, Mapping[str, int]], *, expire: Mapping[str, int] | None = None) -> None:
        """Add each ``counts[name][field]``; a name in ``expire`` lives that many seconds more."""

    def counters(self, names: Sequence[str]) -> dict[str, dict[str, int]]:
        """The fields of each name (an unknown or expired name: empty)."""

    def presence_set(self, group: str, member: str, payload: dict[str, Any], *, ttl: float) -> None:
        """Write ``member``'s record in ``group``; it is live for ``ttl`` seconds."""

    def presence(self, group: str) -> dict[str, dict[str, Any]]:
        """The live records of ``group``, by member."""

    def clear(self) -> None:
        """Forget everything (tests)."""


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis

        # Short timeouts: recording a request must never hold the request up for long.
        self.client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    @staticmethod
    def _key(name: str) -> str:
        return REDIS_PREFIX + name

    def increment(self, counts: Mapping[str, Mapping[str, int]], *, expire: Mapping[str, int] | None = None) -> None:
        pipe = self.client.pipeline(transaction=False)
        for name, fields in counts.items():
            key = self._key(name)
            for field, amount in fields.items():
                pipe.hincrby(key, field, amount)
            if expire and name in expire:
                pipe.expire(key, expire[name])
        pipe.execute()

    def counters(self, names: Sequence[str]) -> dict[str, dict[str, int]]:
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._key(name))
        return {
            name: {field.decode(): int(value) for field, value in raw.items()}
            for name, raw in zip(names, pipe.execute(), strict=True)
        }

    def presence_set(self, group: str, member: str, payload: dict[str, Any], *, ttl: float) -> None:
        key = self._key(f"presence:{group}")
        record = json.dumps({"expires_at": time.time() + ttl, "payload": payload})
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, member, record)
        pipe.expire(key, max(PRESENCE_GROUP_TTL, int(ttl) + 1))
        pipe.execute()

    def presence(self, group: str) -> dict[str, dict[str, Any]]:
        key = self._key(f"presence:{group}")
        now, live, expired = time.time(), {}, []
        for member, raw in self.client.hgetall(key).items():
            record = json.loads(raw)
            if record["expires_at"] > now:
                live[member.decode()] = record["payload"]
            else:
                expired.append(member)
        if expired:
            self.client.hdel(key, *expired)
        return live

    def clear(self) -> None:
        keys = list(self.client.scan_iter(match=REDIS_PREFIX + "*", count=1000))
        if keys:
            self.client.delete(*keys)


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS counter (
    name TEXT NOT NULL, field TEXT NOT NULL, value INTEGER NOT NULL, expires_at REAL,
    PRIMARY KEY (name, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS presence (
    grp TEXT NOT NULL, member TEXT NOT NULL, payload TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (grp, member)
) WITHOUT ROWID;
"""
SQLITE_INCREMENT = (
    "INSERT INTO counter (name, field, value, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name, field) DO UPDATE SET value = value + excluded.value, expires_at = excluded.expires_at"
)


class SqliteStore:
    """One connection per process (re-opened after a fork), used under a lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._purged = 0.0
        _sqlite_stores.add(self)

    def _after_fork_in_child(self) -> None:
        """A fork copies the lock as it was: held, if another thread of the parent (the
        request counts' flushing thread) was writing, and no thread of the child would
        ever release it. The child starts with its own, and its own connection."""
        self._lock = threading.Lock()
        self._conn, self._pid = None, 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SQLITE_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _write(self, statements: list[tuple[str, Sequence[tuple[Any, ...]]]]) -> None:
        with self._lock:
            conn = self._connection()
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    conn.executemany(sql, rows)
                if now - self._purged > PURGE_EVERY:
                    conn.execute("DELETE FROM counter WHERE expires_at < ?", (now,))
                    conn.execute("DELETE FROM presence WHERE expires_at < ?", (now,))
                    self._purged = now
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def increment(self, counts: Mapping[str, Mapping[str, int]], *, expire: Mapping[str, int] | None = None) -> None:
        now = time.time()
        rows = [
            (name, field, amount, now + expire[name] if expire and name in expire else None)
            for name, fields in counts.items()
            for field, amount in fields.items()
        ]
        self._write([(SQLITE_INCREMENT, rows)])

    def counters(self, names: Sequence[str]) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {name: {} for name in names}
        if not names:
            return result
        with self._lock:
            placeholders = ",".join("?" * len(names))
            rows = (
                self._connection()
                .execute(
                    f"SELECT name, field, value FROM counter WHERE name IN ({placeholders}) "  # noqa: S608 - placeholders only
                    "AND (expires_at IS NULL OR expires_at > ?)",
                    (*names, time.time()),
                )
                .fetchall()
            )
        for name, field, value in rows:
            result[name][field] = value
        return result

    def presence_set(self, group: str, member: str, payload: dict[str, Any], *, ttl: float) -> None:
        row = (group, member, json.dumps(payload), time.time() + ttl)
        self._write([("INSERT OR REPLACE INTO presence (grp, member, payload, expires_at) VALUES (?, ?, ?, ?)", [row])])

    def presence(self, group: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = (
                self._connection()
                .execute("SELECT member, payload FROM presence WHERE grp = ? AND expires_at > ?", (group, time.time()))
                .fetchall()
            )
        return {member: json.loads(payload) for member, payload in rows}

    def clear(self) -> None:
        self._write([("DELETE FROM counter", [()]), ("DELETE FROM presence", [()])])


_store: tuple[tuple[str, str], Store] | None = None
_store_lock = threading.Lock()
_sqlite_stores: weakref.WeakSet[SqliteStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """The locks of the store's choice and of every SQLite store start free in a forked
    child (see ``SqliteStore._after_fork_in_child``); Redis's client reconnects by itself."""
    global _store_lock
    _store_lock = threading.Lock()
    for store in list(_sqlite_stores):
        store._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def get_store() -> Store:
    """The store the settings name (one per process)."""
    global _store
    key = (settings.MONITORING_REDIS_URL, str(settings.MONITORING_STORE_PATH))
    with _store_lock:
        if _store is None or _store[0] != key:
            url, path = key
            _store = (key, RedisStore(url) if url else SqliteStore(path))
        return _store[1]
