"""Demo accounts: an admin and two traders. Idempotent."""

from __future__ import annotations

from django.contrib.auth.models import Group

from accounts.models import User
from accounts.roles import ADMIN, TRADER

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@kootabase.local", "kootabase-admin"
TRADERS = (
    ("alice@kootabase.local", "Alice Demo", "kootabase-alice"),
    ("bob@kootabase.local", "Bob Demo", "kootabase-bob"),
)


def seed() -> list[str]:
    """Create the demo accounts if missing; return lines describing them."""
    admin, created = User.objects.get_or_create(
        email=ADMIN_EMAIL, defaults={"name": "Demo Admin", "is_staff": True, "is_superuser": True}
    )
    if created:
        admin.set_password(ADMIN_PASSWORD)
        admin.save(update_fields=["password"])
    admin.groups.add(Group.objects.get(name=ADMIN))
    for email, name, password in TRADERS:
        user, created = User.objects.get_or_create(email=email, defaults={"name": name})
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get(name=TRADER))
    lines = [f"admin   {ADMIN_EMAIL} / {ADMIN_PASSWORD}  (back office: /admin/)"]
    lines += [f"trader  {email} / {password}" for email, _, password in TRADERS]
    return lines
