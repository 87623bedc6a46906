import json

import pytest
from django.contrib.auth.models import Group

from accounts.models import User

URL = "/api/v1/auth/register"


@pytest.mark.django_db
def test_register_creates_a_trader(api_client, password):
    response = api_client.post(URL, {"email": "New@Example.com", "password": password, "name": "New"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["email"] == "new@example.com"
    assert body["roles"] == ["trader"]
    user = User.objects.get(email="new@example.com")
    assert user.check_password(password)
    assert not user.is_staff


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"email": "trader@example.com"}, 409, "email_taken"),
        ({"email": "TRADER@example.com"}, 409, "email_taken"),
        ({"email": "not-an-email"}, 400, "email_invalid"),
        ({"password": "12345678"}, 400, "weak_password"),
        ({"password": "short"}, 400, "weak_password"),
        ({"phone_number": "12"}, 400, "invalid_phone_number"),
        ({"email": ["a@b.c"]}, 400, "email_invalid"),
        ({"name": {"first": "x"}}, 400, "name_invalid"),
        ({"is_staff": True}, 400, "unknown_field"),
    ],
)
def test_bad_registration_is_refused_and_creates_nothing(api_client, user, password, payload, status, code):
    before = User.objects.count()
    body = {"email": "someone@example.com", "password": password, **payload}
    response = api_client.post(URL, body, format="json")
    assert response.status_code == status
    error = response.json()
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["details"], dict)
    assert User.objects.count() == before


@pytest.mark.django_db
def test_malformed_json_is_refused(api_client):
    response = api_client.generic("POST", URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_json_that_is_not_an_object_is_refused(api_client):
    response = api_client.generic("POST", URL, json.dumps([1, 2]), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "body_invalid"
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_missing_fields_are_named(api_client):
    response = api_client.post(URL, {}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "email_required"
    assert set(body["details"]) == {"email", "password"}


@pytest.mark.django_db
def test_every_role_group_exists():
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "admin",
        "compliance",
        "support",
        "accountant",
        "market-operator",
        "trader",
    }
