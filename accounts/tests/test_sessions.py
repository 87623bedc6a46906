"""Login history, "log out everywhere", and CSRF on session-authenticated writes."""

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from audit.models import AuditEvent


def _token_login(email, password, **extra):
    return APIClient().post("/api/v1/auth/token", {"email": email, "password": password}, **extra)


def _session_client(email, password):
    client = APIClient(enforce_csrf_checks=True)
    csrf = client.get("/api/v1/auth/csrf").json()["csrf_token"]
    response = client.post("/api/v1/auth/login", {"email": email, "password": password}, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200
    return client


@pytest.mark.django_db
def test_login_history_records_time_ip_and_user_agent(user, password, other_user):
    _token_login(user.email, "wrong-password-1", REMOTE_ADDR="198.51.100.2", HTTP_USER_AGENT="bad/1.0")
    _token_login(user.email, password, REMOTE_ADDR="203.0.113.5", HTTP_USER_AGENT="app/2.0")
    _token_login(other_user.email, password)
    _token_login("nobody@example.com", "whatever-123")
    client = APIClient()
    client.force_authenticate(user)
    history = client.get("/api/v1/me/logins").json()["results"]
    assert [(e["success"], e["ip"], e["user_agent"]) for e in history] == [
        (True, "203.0.113.5", "app/2.0"),
        (False, "198.51.100.2", "bad/1.0"),
    ]
    assert history[0]["created_at"].endswith("Z")
    unknown = AuditEvent.objects.get(action="auth.login_failed", details__email="nobody@example.com")
    assert unknown.actor is None and unknown.target_id == ""


@pytest.mark.django_db
def test_logout_everywhere_ends_sessions_and_tokens(user, password):
    tokens = _token_login(user.email, password).json()
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    browser = _session_client(user.email, password)
    assert bearer.get("/api/v1/me").status_code == 200
    assert browser.get("/api/v1/me").status_code == 200

    other_tokens = _token_login(user.email, password).json()
    actor = APIClient()
    actor.credentials(HTTP_AUTHORIZATION=f"Bearer {other_tokens['access']}")
    assert actor.post("/api/v1/auth/logout-everywhere").status_code == 204

    for client in (bearer, browser, actor):
        assert client.get("/api/v1/me").status_code == 401
    for refresh in (tokens["refresh"], other_tokens["refresh"]):
        assert APIClient().post("/api/v1/auth/token/refresh", {"refresh": refresh}).status_code == 401
    assert BlacklistedToken.objects.filter(token__user=user).count() == 2
    assert AuditEvent.objects.filter(action="auth.logout_everywhere", actor=user).count() == 1
    # a fresh login works again
    fresh = _token_login(user.email, password).json()
    again = APIClient()
    again.credentials(HTTP_AUTHORIZATION=f"Bearer {fresh['access']}")
    assert again.get("/api/v1/me").status_code == 200


@pytest.mark.django_db
def test_session_writes_need_csrf(user, password):
    client = _session_client(user.email, password)
    response = client.patch("/api/v1/me", {"name": "Forged"})
    assert response.status_code == 403
    user.refresh_from_db()
    assert user.name == "Trader"
    ok = client.patch("/api/v1/me", {"name": "Mine"}, HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert ok.status_code == 200


@pytest.mark.django_db
def test_password_change_is_audited(auth_client, user, password):
    auth_client.post("/api/v1/me/password", {"old_password": password, "new_password": "another-long-phrase-9"})
    assert AuditEvent.objects.filter(action="auth.password_changed", actor=user).exists()


@pytest.mark.django_db
def test_client_ip_honours_num_proxies(rf, settings):
    from rest_framework.settings import api_settings

    from accounts.services import client_ip

    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    assert client_ip(request) == "10.0.0.2"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    try:
        assert client_ip(request) == "203.0.113.9"
    finally:
        api_settings.reload()
