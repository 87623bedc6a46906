"""Model fields shared by the apps."""

from __future__ import annotations

from typing import Any

from django.db import models


class CaseSensitiveCharField(models.CharField):
    """Text compared exactly, as a key a client chooses must be (a client order id, an
    idempotency key: ``abc`` and ``ABC`` are two keys). SQLite and PostgreSQL compare text
    exactly already; MySQL/MariaDB's default collations ignore case, so there the column
    gets its character set's binary collation: a unique index would otherwise refuse
    ``ABC`` after ``abc`` while a lookup of ``ABC`` found ``abc``."""

    def db_parameters(self, connection: Any) -> dict[str, Any]:
        params = super().db_parameters(connection)
        if connection.vendor == "mysql" and not self.db_collation:
            params["collation"] = "utf8mb4_bin"
        return params
