"""User controls in the back office: freeze / unfreeze (with the option to cancel the
user's open orders through the matcher) and the reset of a lost 2FA device. For each:
the effect, the permission (refused staff change nothing) and the audit record."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from accounts.models import User
from accounts.otp import otp_reset
from accounts.roles import ADMIN, COMPLIANCE, SUPPORT
from accounts.services import user_freeze, user_unfreeze
from accounts.tests.helpers import admin_login, enable_otp, staff_member
from audit import actions
from audit.models import AuditEvent
from kootabase.errors import Conflict, PermissionDenied
from orders import demo as orders_demo
from orders.models import Order
from orders.services import order_place
from orders.tests.conftest import _private_var_dir  # noqa: F401 - fixture (the matcher's lock file)
from orders.tests.test_matching import run_matcher
from wallets.models import AccountKind, Currency, LedgerAccount
from wallets.tests.factories import fund


@pytest.fixture
def compliance(db) -> User:
    return staff_member("compliance@example.com", COMPLIANCE)


@pytest.fixture
def admin(db) -> User:
    return staff_member("admin-staff@example.com", ADMIN)


@pytest.fixture
def support(db) -> User:
    return staff_member("support@example.com", SUPPORT)


def _control(user: User, control: str) -> str:
    return f"/admin/accounts/user/{user.pk}/control/{control}/"


def _events(user: User) -> list[tuple[str, int | None, dict]]:
    return list(
        AuditEvent.objects.filter(target_type="accounts.user", target_id=str(user.pk))
        .exclude(action=actions.LOGIN)
        .order_by("id")
        .values_list("action", "actor_id", "details")
    )


# --- Freeze and unfreeze ----------------------------------------------------------------------


@pytest.fixture
def trader_with_orders(user):
    orders_demo.seed()
    usdt = Currency.objects.get(code="USDT")
    fund(user, usdt, "1000")
    for price in ("100", "90"):
        order_place(
            user=user, market_symbol="ETH-USDT", side="buy", type="limit", quantity=Decimal(1), price=Decimal(price)
        )
    run_matcher()
    assert set(Order.objects.filter(user=user).values_list("status", flat=True)) == {"open"}
    return user


def _locked_usdt(user: User) -> Decimal:
    account = LedgerAccount.objects.get(user=user, currency__code="USDT", kind=AccountKind.LOCKED)
    return account.balance


def test_compliance_freezes_a_user_and_cancels_their_orders(compliance, trader_with_orders):
    user = trader_with_orders
    client = admin_login(Client(), compliance)
    page = client.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()
    assert _control(user, "freeze") in page and _control(user, "reset-2fa") not in page
    assert client.get(_control(user, "freeze")).status_code == 200
    response = client.post(
        _control(user, "freeze"), {"reason": "chargeback fraud", "cancel_orders": "on"}, REMOTE_ADDR="192.0.2.9"
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.is_frozen, user.frozen_reason) == (True, "chargeback fraud")
    assert set(Order.objects.filter(user=user).values_list("cancel_requested", "cancel_reason")) == {
        (True, "account_frozen")
    }
    run_matcher()
    assert set(Order.objects.filter(user=user).values_list("status", "reject_reason")) == {
        ("cancelled", "account_frozen")
    }
    assert _locked_usdt(user) == 0
    assert _events(user) == [
        (actions.USER_FROZEN, compliance.pk, {"reason": "chargeback fraud", "orders_cancelled": 2})
    ]
    assert AuditEvent.objects.get(action=actions.USER_FROZEN).ip == "192.0.2.9"


def test_a_freeze_without_cancelling_leaves_the_orders(compliance, trader_with_orders):
    user = trader_with_orders
    client = admin_login(Client(), compliance)
    assert client.post(_control(user, "freeze"), {"reason": "review"}).status_code == 302  # box unticked
    run_matcher()
    assert set(Order.objects.filter(user=user).values_list("status", "cancel_requested")) == {("open", False)}
    assert _events(user) == [(actions.USER_FROZEN, compliance.pk, {"reason": "review"})]


def test_compliance_unfreezes_with_a_reason(compliance, user):
    user_freeze(user=user, actor=compliance, reason="review")
    client = admin_login(Client(), compliance)
    assert _control(user, "unfreeze") in client.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()
    assert client.post(_control(user, "unfreeze"), {"reason": ""}).status_code == 200  # a reason is required
    assert User.objects.get(pk=user.pk).is_frozen
    assert client.post(_control(user, "unfreeze"), {"reason": "cleared"}).status_code == 302
    assert not User.objects.get(pk=user.pk).is_frozen
    assert _events(user)[-1] == (actions.USER_UNFROZEN, compliance.pk, {"reason": "cleared", "frozen_for": "review"})


def test_staff_without_freeze_user_are_refused_and_nothing_changes(support, compliance, trader_with_orders):
    user = trader_with_orders
    client = admin_login(Client(), support)
    assert _control(user, "freeze") not in client.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()
    assert client.get(_control(user, "freeze")).status_code == 403
    assert client.post(_control(user, "freeze"), {"reason": "x", "cancel_orders": "on"}).status_code == 403
    with pytest.raises(PermissionDenied) as refused:
        user_freeze(user=user, actor=support, reason="x", cancel_orders=True)
    assert refused.value.code == "freeze_forbidden"
    user.refresh_from_db()
    assert not user.is_frozen
    assert set(Order.objects.filter(user=user).values_list("cancel_requested", flat=True)) == {False}
    user_freeze(user=user, actor=compliance, reason="real")
    with pytest.raises(PermissionDenied):
        user_unfreeze(user=user, actor=support, reason="let them go")
    assert User.objects.get(pk=user.pk).is_frozen
    assert [e[0] for e in _events(user)] == [actions.USER_FROZEN]


# --- Reset 2FA ---------------------------------------------------------------------------------


@pytest.fixture
def locked_out(user, password):
    """A user with 2FA on, a browser session and a refresh token, who lost their phone."""
    enable_otp(user)
    device = StaticDevice.objects.create(user=user, name="recovery codes", confirmed=True)
    StaticToken.objects.create(device=device, token="abcd1234")
    tokens = APIClient().post("/api/v1/auth/token", {"email": user.email, "password": password}).json()
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert bearer.get("/api/v1/me").status_code == 200
    return user, bearer, tokens["refresh"]


def test_an_admin_resets_2fa_devices_go_and_sessions_end(admin, locked_out):
    user, bearer, refresh = locked_out
    epoch = user.auth_epoch
    client = admin_login(Client(), admin)
    assert _control(user, "reset-2fa") in client.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()
    response = client.post(_control(user, "reset-2fa"), {"reason": "lost phone, identity checked by video call"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert not StaticDevice.objects.filter(user=user).exists()
    assert User.objects.get(pk=user.pk).auth_epoch == epoch + 1
    assert bearer.get("/api/v1/me").status_code == 401
    assert APIClient().post("/api/v1/auth/token/refresh", {"refresh": refresh}).status_code == 401
    assert BlacklistedToken.objects.filter(token__user=user).count() == 1
    assert _events(user) == [
        (actions.LOGOUT_EVERYWHERE, admin.pk, {}),
        (actions.OTP_RESET, admin.pk, {"reason": "lost phone, identity checked by video call"}),
    ]


def test_staff_without_reset_otp_are_refused_and_nothing_changes(compliance, support, locked_out):
    user, bearer, _ = locked_out
    for staff in (compliance, support):
        client = admin_login(Client(), staff)
        assert client.get(_control(user, "reset-2fa")).status_code == 403
        assert client.post(_control(user, "reset-2fa"), {"reason": "asked nicely"}).status_code == 403
        with pytest.raises(PermissionDenied) as refused:
            otp_reset(user=user, actor=staff, reason="asked nicely")
        assert refused.value.code == "otp_reset_forbidden"
    assert TOTPDevice.objects.filter(user=user).exists() and StaticDevice.objects.filter(user=user).exists()
    assert bearer.get("/api/v1/me").status_code == 200
    assert _events(user) == []


def test_no_one_resets_their_own_2fa_and_there_must_be_something_to_reset(admin, user):
    enable_otp(admin)
    client = admin_login(Client(), admin)
    assert _control(admin, "reset-2fa") not in client.get(f"/admin/accounts/user/{admin.pk}/change/").content.decode()
    with pytest.raises(PermissionDenied):
        otp_reset(user=admin, actor=admin, reason="lost it")
    assert TOTPDevice.objects.filter(user=admin).exists()
    with pytest.raises(Conflict) as refused:
        otp_reset(user=user, actor=admin, reason="no device")
    assert refused.value.code == "otp_not_enabled"
    assert User.objects.get(pk=user.pk).auth_epoch == 0
    assert _events(user) == [] and _events(admin) == []
