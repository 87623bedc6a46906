"""Which role can see and do what in the back office: least privilege, as a matrix.

Every staff member logs in with 2FA (``admin_login``); the trader is not staff at all.
"""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import User
from accounts.tests.helpers import admin_login

ROLES = ("admin", "compliance", "support", "accountant", "market-operator", "trader")
A, C, S, AC, M, T = ROLES

# page -> the roles that get 200; every other staff role gets 403 and the trader is sent to log in.
MATRIX = {
    "/admin/": {A, C, S, AC, M},
    "/admin/accounts/user/": {A, C, S, AC},
    "/admin/accounts/user/add/": {A},
    "/admin/accounts/user/{user}/change/": {A, C, S, AC},  # view-only for all but admin
    "/admin/auth/group/": {A},
    "/admin/audit/auditevent/": {A, C},
    "/admin/accounts/apikey/": {A, C},
    "/admin/otp_totp/totpdevice/": {A},
    "/admin/otp_static/staticdevice/": {A},
    "/admin/blockchain/withdrawaladdress/": {A, C, S, AC},
    "/admin/blockchain/addressbooksetting/": {A, C, S, AC},
}
# model permission -> the roles holding it
PERMISSIONS = {
    "accounts.change_user": {A},
    "accounts.delete_user": set(),
    "auth.change_group": {A},
    "audit.view_auditevent": {A, C},
    "accounts.view_apikey": {A, C},
    "accounts.change_apikey": set(),
    "otp_totp.delete_totpdevice": {A},
    "otp_totp.change_totpdevice": set(),
    "blockchain.view_withdrawaladdress": {A, C, S, AC},
    "blockchain.delete_withdrawaladdress": set(),
    "blockchain.view_addressbooksetting": {A, C, S, AC},
}


def _member(role: str) -> User:
    user = User.objects.create_user(email=f"{role}-member@example.com", password="pw-role-12345", is_staff=role != T)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_admin_pages_by_role(role, user):
    client = admin_login(Client(), _member(role))
    seen = {}
    for page in MATRIX:
        seen[page] = client.get(page.format(user=user.pk)).status_code
    expected = {page: 200 if role in roles else (302 if role == T else 403) for page, roles in MATRIX.items()}
    assert seen == expected


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_permissions_by_role(role):
    member = _member(role)
    held = {perm for perm in PERMISSIONS if member.has_perm(perm)}
    assert held == {perm for perm, roles in PERMISSIONS.items() if role in roles}


@pytest.mark.django_db
@pytest.mark.parametrize("role", [C, S, AC, M])
def test_view_only_roles_change_nothing(role, user):
    client = admin_login(Client(), _member(role))
    client.post(f"/admin/accounts/user/{user.pk}/change/", {"email": "taken-over@example.com", "is_staff": "on"})
    user.refresh_from_db()
    assert (user.email, user.is_staff) == ("trader@example.com", False)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_the_api_gives_no_role_more_than_its_own_data(role, make_api_key, user):
    """Staff roles act in the back office; through the API everyone sees only their own things."""
    from rest_framework.test import APIClient

    make_api_key()  # the trader's key
    member = _member(role)
    client = APIClient()
    client.force_authenticate(member)
    assert client.get("/api/v1/me").json()["email"] == member.email
    assert client.get("/api/v1/api-keys").json()["results"] == []
    assert client.get("/api/v1/me/logins").json()["results"] == []
