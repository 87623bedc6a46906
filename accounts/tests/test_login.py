import pytest
from django.contrib.sessions.models import Session
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken

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


@pytest.mark.django_db
def test_an_access_token_stops_working_at_once_when_its_user_is_deactivated_or_gone(api_client, user, password):
    tokens = api_client.post("/api/v1/auth/token", {"email": user.email, "password": password}).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.get("/api/v1/me").status_code == 200

    User.objects.filter(pk=user.pk).update(is_active=False)
    inactive = client.get("/api/v1/me")
    assert (inactive.status_code, inactive.json()["code"], inactive.json()["message"]) == (
        401,
        "authentication_failed",
        "User is inactive",
    )
    User.objects.filter(pk=user.pk).update(is_active=True)
    assert client.get("/api/v1/me").status_code == 200

    token = AccessToken.for_user(user)
    token["user_id"] = user.pk + 1000  # signed, but of no user
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    gone = client.get("/api/v1/me")
    assert (gone.status_code, gone.json()["code"], gone.json()["message"]) == (
        401,
        "authentication_failed",
        "User not found",
    )


@pytest.mark.django_db
def test_the_token_users_row_is_read_as_the_orm_reads_it(user):
    from django.utils import timezone

    from accounts.selectors import user_get_by_id

    User.objects.filter(pk=user.pk).update(frozen_at=timezone.now(), frozen_reason="check", last_login=timezone.now())
    expected = User.objects.get(pk=user.pk)
    for _ in range(2):  # compiled on the first call, reused on the second
        loaded = user_get_by_id(pk=user.pk)
        fields = [field.attname for field in User._meta.concrete_fields]
        assert [getattr(loaded, name) for name in fields] == [getattr(expected, name) for name in fields]
        assert not loaded._state.adding and loaded._state.db == expected._state.db
    assert user_get_by_id(pk=user.pk + 1000) is None


@pytest.mark.django_db
def test_a_token_verified_before_is_still_refused_once_expired(user):
    from datetime import timedelta

    from accounts.api import authentication

    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))  # signed, but expired
    raw = str(token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    uncached = client.get("/api/v1/me")
    assert uncached.status_code == 401
    # As if it had been verified while it was still valid:
    authentication._verified[raw.encode()] = (AccessToken, dict(token.payload))
    cached = client.get("/api/v1/me")
    assert (cached.status_code, cached.json()) == (401, uncached.json())
    assert raw.encode() not in authentication._verified


@pytest.mark.django_db
def test_a_verified_token_is_reused_only_for_its_exact_bytes(user, password):
    tokens = APIClient().post("/api/v1/auth/token", {"email": user.email, "password": password}).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert [client.get("/api/v1/me").status_code for _ in range(2)] == [200, 200]
    head, payload, signature = tokens["access"].split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert client.get("/api/v1/me").status_code == 401
