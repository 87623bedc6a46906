import pytest
from django.contrib.sessions.models import Session
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import User


@pytest.mark.django_db
def test_session_login_me_and_logout(user, password):
    client = APIClient(enforce_csrf_checks=True)
    csrf = client.get("/api/v1/auth/csrf").json()["csrf_token"]
    response = client.post(
        "/api/v1/auth/login", {"email": "Trader@Example.com", "password": password}, HTTP_X_CSRFTOKEN=csrf
    )
    assert response.status_code == 200, response.json()
    assert client.get("/api/v1/me").json()["email"] == "trader@example.com"
    csrf = client.cookies["csrftoken"].value
    assert client.post("/api/v1/auth/logout", HTTP_X_CSRFTOKEN=csrf).status_code == 204
    assert client.get("/api/v1/me").status_code in (401, 403)


@pytest.mark.django_db
def test_session_login_requires_csrf(user, password):
    client = APIClient(enforce_csrf_checks=True)
    response = client.post("/api/v1/auth/login", {"email": user.email, "password": password})
    assert response.status_code == 403
    assert Session.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/auth/login", "/api/v1/auth/token"])
def test_wrong_credentials_create_no_session_and_no_token(api_client, user, url):
    for email, pw in [(user.email, "wrong-password-123"), ("nobody@example.com", "whatever-123")]:
        response = api_client.post(url, {"email": email, "password": pw})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_credentials"
    assert Session.objects.count() == 0
    assert OutstandingToken.objects.count() == 0


@pytest.mark.django_db
def test_repeated_failures_lock_out_even_the_right_password(api_client, user, password, settings):
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert (
            api_client.post("/api/v1/auth/token", {"email": user.email, "password": "nope-nope-1"}).status_code == 401
        )
    response = api_client.post("/api/v1/auth/token", {"email": user.email, "password": password})
    assert response.status_code == 429
    assert response.json()["code"] == "too_many_login_attempts"
    assert int(response["Retry-After"]) > 0
    assert OutstandingToken.objects.count() == 0


@pytest.mark.django_db
def test_success_resets_the_email_failure_count(api_client, user, password, settings):
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        api_client.post("/api/v1/auth/token", {"email": user.email, "password": "nope-nope-1"})
    assert api_client.post("/api/v1/auth/token", {"email": user.email, "password": password}).status_code == 200
    assert api_client.post("/api/v1/auth/token", {"email": user.email, "password": "nope-nope-1"}).status_code == 401


@pytest.mark.django_db
def test_token_flow_refresh_rotates_and_revoke_blocks(api_client, user, password):
    tokens = api_client.post("/api/v1/auth/token", {"email": user.email, "password": password}).json()
    assert tokens["user"]["email"] == user.email

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.get("/api/v1/me").status_code == 200

    refreshed = api_client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["access"] and new["refresh"] != tokens["refresh"]
    # the rotated-out refresh token is revoked
    again = api_client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]})
    assert again.status_code == 401
    assert again.json()["code"] == "token_not_valid"

    assert api_client.post("/api/v1/auth/token/revoke", {"refresh": new["refresh"]}).status_code == 204
    assert api_client.post("/api/v1/auth/token/refresh", {"refresh": new["refresh"]}).status_code == 401


@pytest.mark.django_db
def test_garbage_tokens_are_refused(api_client):
    for url in ("/api/v1/auth/token/refresh", "/api/v1/auth/token/revoke"):
        response = api_client.post(url, {"refresh": "garbage"})
        assert response.status_code == 401
        assert response.json()["code"] == "token_not_valid"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    assert client.get("/api/v1/me").status_code == 401


@pytest.mark.django_db
def test_inactive_user_cannot_log_in(api_client, user, password):
    User.objects.filter(pk=user.pk).update(is_active=False)
    response = api_client.post("/api/v1/auth/token", {"email": user.email, "password": password})
    assert response.status_code == 401
