"""Account reads."""

from __future__ import annotations

from accounts.models import User, normalize_email


def user_get_by_email(*, email: str) -> User | None:
    return User.objects.filter(email=normalize_email(email), is_active=True).first()


def user_roles(*, user: User) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))
