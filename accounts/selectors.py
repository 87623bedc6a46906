"""Account reads."""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import QuerySet

from accounts.models import ApiKey, User, normalize_email
from kootabase.statements import Statement

_USER_COLUMNS = tuple(f.attname for f in User._meta.concrete_fields)
_active_by_email = Statement(
    lambda email: User.objects.filter(email=email, is_active=True).values_list(*_USER_COLUMNS),
    email=User._meta.get_field("email"),
)


_by_id = Statement(lambda pk: User.objects.filter(pk=pk).values_list(*_USER_COLUMNS), pk=User._meta.pk)


def user_get_by_id(*, pk: Any) -> User | None:
    """The user with this id (active or not), or None. One statement compiled once: every
    request with a bearer token reads its user here."""
    rows = _by_id.rows(pk=pk)
    return User.from_db(DEFAULT_DB_ALIAS, list(_USER_COLUMNS), rows[0]) if rows else None


def user_get_by_email(*, email: str) -> User | None:
    """The active user with this email (compared in lower case), or None. One statement
    compiled once: every transfer looks its recipient up here."""
    rows = _active_by_email.rows(email=normalize_email(email))
    return User.from_db(DEFAULT_DB_ALIAS, list(_USER_COLUMNS), rows[0]) if rows else None


def user_roles(*, user: User) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def api_keys_active(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True).order_by("-id")


def login_history(*, user: User) -> QuerySet[Any]:
    from audit.selectors import login_history as audit_login_history

    return audit_login_history(user=user)
