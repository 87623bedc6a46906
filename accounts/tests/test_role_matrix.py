"""Which role can see and do what in the back office: least privilege, as a matrix.

Every staff member logs in with 2FA (``admin_login``); the trader is not staff at all.
"""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import User
from accounts.tests.helpers import admin_login
from orders.controls import market_may_operate
from orders.models import Market

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
    # The user controls (accounts.admin) and the market controls (orders.admin).
    "/admin/accounts/user/{user}/control/freeze/": {A, C},
    "/admin/accounts/user/{user}/control/reset-2fa/": {A},
    "/admin/orders/market/": {A, M},
    "/admin/orders/market/{market}/change/": {A, M},
    "/admin/orders/market/{market}/control/halt/": {A},  # a market operator: only on markets assigned to them
    "/admin/orders/market/{market}/operators/": {A},
    "/admin/blockchain/withdrawaladdress/": {A, C, S, AC},
    "/admin/blockchain/addressbooksetting/": {A, C, S, AC},
    # The AML review queue (decided by compliance) and the rules' parameters (set by compliance).
    "/admin/aml/case/": {A, C},
    "/admin/aml/ruleparameter/": {A, C},
    "/admin/aml/ruleparameter/add/": {C},
    # The health dashboard (monitoring) and its numbers.
    "/admin/dashboard/": {A, C, AC, M},
    "/admin/dashboard/data": {A, C, AC, M},
    # KYC: the review queue, users' tiers and the tiers (read by admin; compliance reviews and edits).
    "/admin/kyc/kycsubmission/?status__exact=pending": {A, C},
    "/admin/kyc/kycprofile/": {A, C},
    "/admin/kyc/kyctier/": {A, C},
}
# model permission -> the roles holding it
PERMISSIONS = {
    "accounts.change_user": {A},
    "accounts.delete_user": set(),
    "auth.change_group": {A},
    "audit.view_auditevent": {A, C},
    "accounts.view_apikey": {A, C},
    "accounts.change_apikey": set(),
    "otp_totp.delete_totpdevice": set(),  # 2FA is reset through accounts.reset_otp, never by deleting devices
    "otp_totp.change_totpdevice": set(),
    "otp_static.delete_staticdevice": set(),
    "accounts.freeze_user": {A, C},
    "accounts.reset_otp": {A},
    "orders.change_market": {M},
    "orders.operate_market": {A},  # on every market; market operators hold it per market (guardian)
    "orders.assign_market_operator": {A},
    "blockchain.view_withdrawaladdress": {A, C, S, AC},
    "blockchain.delete_withdrawaladdress": set(),
    "blockchain.view_addressbooksetting": {A, C, S, AC},
    "blockchain.decide_withdrawal": set(),  # withdrawals in review are decided through their AML case
    "aml.view_case": {A, C},
    "aml.decide_case": {C},
    "aml.change_ruleparameter": {C},
    "aml.delete_ruleparameter": {C},
    "monitoring.view_dashboard": {A, C, AC, M},
    "kyc.view_kycsubmission": {A, C},
    "kyc.review_kycsubmission": {C},  # opens documents, approves, rejects
    "kyc.view_kyctier": {A, C},
    "kyc.change_kyctier": {C},
}


def _member(role: str) -> User:
    user = User.objects.create_user(email=f"{role}-member@example.com", password="pw-role-12345", is_staff=role != T)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def market(db):
    from orders import demo

    demo.seed()
    return Market.objects.get(symbol="ETH-USDT")


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_admin_pages_by_role(role, user, market):
    client = admin_login(Client(), _member(role))
    seen = {}
    for page in MATRIX:
        seen[page] = client.get(page.format(user=user.pk, market=market.pk)).status_code
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


@pytest.mark.django_db
def test_a_market_operator_operates_only_the_markets_assigned_to_them(market):
    from guardian.shortcuts import assign_perm

    operator = _member(M)
    other = Market.objects.exclude(pk=market.pk).first()
    assert not market_may_operate(user=operator, market=market)
    assign_perm("orders.operate_market", operator, market)
    operator = User.objects.get(pk=operator.pk)  # fresh permission caches
    assert market_may_operate(user=operator, market=market)
    assert not market_may_operate(user=operator, market=other)
    assert not operator.has_perm("orders.operate_market")  # not on the model: not every market
    admin = _member(A)
    assert market_may_operate(user=admin, market=market) and market_may_operate(user=admin, market=other)
