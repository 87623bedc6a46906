import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from accounts.models import User


@pytest.mark.django_db
def test_me_requires_authentication(api_client):
    response = api_client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
def test_read_and_update_me(auth_client, user):
    assert auth_client.get("/api/v1/me").json()["name"] == "Trader"
    response = auth_client.patch("/api/v1/me", {"name": "Renamed", "phone_number": "+14155550123"})
    assert response.status_code == 200
    user.refresh_from_db()
    assert (user.name, user.phone_number) == ("Renamed", "+14155550123")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "code"),
    [({"email": "x@example.com"}, "unknown_field"), ({"phone_number": "555"}, "invalid_phone_number")],
)
def test_me_update_refuses_bad_input_and_changes_nothing(auth_client, user, payload, code):
    response = auth_client.patch("/api/v1/me", payload)
    assert response.status_code == 400
    assert response.json()["code"] == code
    fresh = User.objects.get(pk=user.pk)
    assert (fresh.email, fresh.phone_number, fresh.updated_at) == (user.email, user.phone_number, user.updated_at)


@pytest.mark.django_db
def test_password_change_revokes_refresh_tokens(api_client, user, password):
    tokens = api_client.post("/api/v1/auth/token", {"email": user.email, "password": password}).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")

    wrong = client.post("/api/v1/me/password", {"old_password": "nope", "new_password": "another-long-phrase-9"})
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "wrong_password"
    weak = client.post("/api/v1/me/password", {"old_password": password, "new_password": "123"})
    assert weak.json()["code"] == "weak_password"
    user.refresh_from_db()
    assert user.check_password(password)

    ok = client.post("/api/v1/me/password", {"old_password": password, "new_password": "another-long-phrase-9"})
    assert ok.status_code == 204
    user.refresh_from_db()
    assert user.check_password("another-long-phrase-9")
    assert BlacklistedToken.objects.filter(token__user=user).count() == 1
    assert api_client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}).status_code == 401
