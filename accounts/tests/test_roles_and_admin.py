from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from accounts import demo
from accounts.models import User
from accounts.roles import ROLE_PERMISSIONS
from accounts.tests.helpers import admin_login


def _perms(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


@pytest.mark.django_db
def test_roles_hold_exactly_their_listed_permissions():
    for role, entries in ROLE_PERMISSIONS.items():
        expected = {e for e in entries if not e.endswith(".*")}
        assert expected <= _perms(role), role
    assert _perms("trader") == set()
    assert "accounts.change_user" not in _perms("support")
    assert "accounts.delete_user" not in _perms("admin")


@pytest.mark.django_db
def test_demo_data_is_idempotent_and_admin_can_log_in():
    lines = demo.seed()
    demo.seed()
    assert User.objects.filter(email=demo.ADMIN_EMAIL).count() == 1
    assert any("manage.py totp_code admin@kootabase.local" in line for line in lines)
    assert any("otpauth://totp/" in line for line in lines)
    # what the printed instructions say: email, password and the code totp_code prints
    out = StringIO()
    call_command("totp_code", demo.ADMIN_EMAIL, stdout=out, stderr=StringIO())
    code = out.getvalue().strip()
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": demo.ADMIN_EMAIL, "password": demo.ADMIN_PASSWORD, "otp_token": code},
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/accounts/user/").status_code == 200
    for email, _, pw in demo.TRADERS:
        trader = User.objects.get(email=email)
        assert trader.groups.filter(name="trader").exists()
        assert trader.check_password(pw)


@pytest.mark.django_db
def test_admin_assigns_a_role(admin_client):
    user = User.objects.create_user(email="staff@example.com", password="x")
    support = Group.objects.get(name="support")
    response = admin_client.post(
        f"/admin/accounts/user/{user.pk}/change/",
        {
            "email": user.email,
            "name": "",
            "phone_number": "",
            "is_active": "on",
            "is_staff": "on",
            "groups": [support.pk],
        },
    )
    assert response.status_code == 302, response.content[:2000]
    user.refresh_from_db()
    assert list(user.groups.values_list("name", flat=True)) == ["support"]
    assert user.has_perm("accounts.view_user")
    assert not user.has_perm("accounts.change_user")


@pytest.mark.django_db
def test_support_staff_sees_users_but_cannot_change_them():
    staff = User.objects.create_user(email="support@example.com", password="pw-support-123", is_staff=True)
    staff.groups.add(Group.objects.get(name="support"))
    client = admin_login(Client(), staff)
    target = User.objects.create_user(email="someone@example.com", password="x")
    assert client.get("/admin/accounts/user/").status_code == 200
    response = client.post(f"/admin/accounts/user/{target.pk}/change/", {"email": "changed@example.com"})
    assert response.status_code == 403
    assert client.get("/admin/auth/group/").status_code == 403


@pytest.mark.django_db
def test_guardian_object_permissions_work_with_the_user_model():
    from guardian.shortcuts import assign_perm

    operator = User.objects.create_user(email="op@example.com", password="x")
    group = Group.objects.get(name="support")
    assign_perm("auth.change_group", operator, group)
    assert operator.has_perm("auth.change_group", group)
    assert not operator.has_perm("auth.change_group")
