"""Helpers for tests that need a real database server."""

from __future__ import annotations

from django.db import connections


def kill_connection(connection_id: int) -> None:
    """End a server connection by its id, as a server restart, a failover or the idle
    timeout (``wait_timeout``) does."""
    side = connections.create_connection("default")
    try:
        with side.cursor() as cursor:
            cursor.execute(f"KILL {int(connection_id)}")
    finally:
        side.close()
