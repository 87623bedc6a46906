"""Every staff login to the back office needs a second factor."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import User
from accounts.tests.helpers import enable_otp, otp_code
from audit.models import AuditEvent

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def staff(db, password):
    return User.objects.create_user(email="staff@example.com", password=password, is_staff=True, is_superuser=True)


def _login(client, email, password, token=None):
    data = {"username": email, "password": password}
    if token is not None:
        data["otp_token"] = token
    return client.post(LOGIN, data)


@pytest.mark.django_db
def test_admin_refuses_a_login_without_a_code(staff, password):
    enable_otp(staff)
    client = Client()
    response = _login(client, staff.email, password)
    assert response.status_code == 200  # the form again, with an error
    assert client.get("/admin/").status_code == 302
    response = _login(client, staff.email, password, "000000")
    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_admin_accepts_password_and_code(staff, password):
    enable_otp(staff)
    client = Client()
    assert _login(client, staff.email, password, otp_code(staff)).status_code == 302
    assert client.get("/admin/").status_code == 200
    login = AuditEvent.objects.get(action="auth.login", actor=staff)
    assert login.details["path"] == "/admin/login/"


@pytest.mark.django_db
def test_staff_without_a_device_cannot_enter(staff, password):
    client = Client()
    assert _login(client, staff.email, password, "123456").status_code == 200
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_a_password_only_session_is_not_enough(staff):
    enable_otp(staff)
    client = Client()
    client.force_login(staff)  # a session from the API login: no second factor
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_admin_logins_share_the_lockout(staff, password, settings):
    enable_otp(staff)
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        _login(client, staff.email, "wrong-password-1", "000000")
    response = _login(client, staff.email, password, otp_code(staff))
    assert b"Too many failed logins" in response.content
    assert client.get("/admin/").status_code == 302
    assert AuditEvent.objects.filter(action="auth.login_failed", target_id=str(staff.pk)).count() == 5


@pytest.mark.django_db
def test_totp_code_command(staff, settings):
    device = enable_otp(staff)
    out = StringIO()
    call_command("totp_code", staff.email, stdout=out, stderr=StringIO())
    assert device.verify_token(out.getvalue().strip())
    with pytest.raises(CommandError):
        call_command("totp_code", "nobody@example.com", stdout=StringIO())
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="development only"):
        call_command("totp_code", staff.email, stdout=StringIO())
