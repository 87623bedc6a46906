"""API keys: creation needs 2FA; each signed request is checked for scope, signature, expiry, replay and IP."""

import time

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

from accounts.api.authentication import ApiKeyAuthentication
from accounts.api.permissions import HasApiKeyScope
from accounts.api_keys import decrypt_secret
from accounts.models import ApiKey, User
from accounts.tests.helpers import assert_hidden_from_other_users, otp_code, signed
from audit.models import AuditEvent

CREATE = {"label": "grid bot", "scopes": ["read", "trade"], "ip_allowlist": ["10.0.0.0/8"]}


# --- creation, listing, revocation ----------------------------------------------------


@pytest.mark.django_db
def test_create_needs_2fa_on(auth_client, user):
    response = auth_client.post("/api/v1/api-keys", {**CREATE, "otp_code": "123456"})
    assert response.status_code == 403
    assert response.json()["code"] == "otp_required"
    assert ApiKey.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(("otp", "code"), [(None, "otp_required"), ("", "otp_required"), ("000000", "otp_invalid")])
def test_create_needs_a_valid_code(auth_client, otp_user, otp, code):
    body = CREATE if otp is None else {**CREATE, "otp_code": otp}
    response = auth_client.post("/api/v1/api-keys", body)
    assert response.status_code == 403
    assert response.json()["code"] == code
    assert ApiKey.objects.count() == 0
    assert not AuditEvent.objects.filter(action="api_key.created").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"scopes": ["admin"]}, "scopes_invalid_choice"),
        ({"scopes": []}, "scopes_empty"),
        ({"ip_allowlist": ["not-an-ip"]}, "ip_allowlist_invalid"),
        ({"label": ""}, "label_blank"),
        ({"secret": "mine"}, "unknown_field"),
    ],
)
def test_bad_create_input_is_refused_and_creates_nothing(auth_client, otp_user, change, code):
    response = auth_client.post("/api/v1/api-keys", {**CREATE, "otp_code": otp_code(otp_user), **change})
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert ApiKey.objects.count() == 0


@pytest.mark.django_db
def test_create_shows_the_secret_once_and_stores_it_encrypted(auth_client, otp_user):
    response = auth_client.post("/api/v1/api-keys", {**CREATE, "otp_code": otp_code(otp_user)})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["scopes"] == ["read", "trade"]
    assert body["ip_allowlist"] == ["10.0.0.0/8"]
    secret = body["secret"]
    api_key = ApiKey.objects.get(pk=body["id"])
    assert secret not in api_key.secret_encrypted
    assert decrypt_secret(api_key.secret_encrypted) == secret
    listed = auth_client.get("/api/v1/api-keys").json()["results"]
    assert [k["id"] for k in listed] == [api_key.pk]
    assert "secret" not in listed[0] and "secret_encrypted" not in listed[0]
    event = AuditEvent.objects.get(action="api_key.created")
    assert (event.actor, event.target_id, event.details["scopes"]) == (otp_user, str(api_key.pk), ["read", "trade"])


@pytest.mark.django_db
def test_revoke(auth_client, make_api_key):
    api_key, secret = make_api_key()
    assert auth_client.delete(f"/api/v1/api-keys/{api_key.pk}").status_code == 204
    assert auth_client.get("/api/v1/api-keys").json()["results"] == []
    assert AuditEvent.objects.filter(action="api_key.revoked", target_id=str(api_key.pk)).exists()
    response = signed(APIClient(), "GET", "/api/v1/me", key=api_key.key, secret=secret)
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_invalid"
    assert auth_client.delete(f"/api/v1/api-keys/{api_key.pk}").status_code == 404


@pytest.mark.django_db
def test_other_users_keys_are_404_and_untouched(make_api_key, other_client, other_user):
    api_key, _ = make_api_key()
    other_key, _ = make_api_key(user=other_user)
    assert_hidden_from_other_users(
        other_client,
        [("DELETE", f"/api/v1/api-keys/{api_key.pk}", None), ("DELETE", "/api/v1/api-keys/999999", None)],
        snapshot=lambda: list(ApiKey.objects.order_by("id").values_list("id", "revoked_at")),
    )
    assert [k["id"] for k in other_client.get("/api/v1/api-keys").json()["results"]] == [other_key.pk]


# --- signed requests ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_valid_signed_flow(make_api_key, user):
    api_key, secret = make_api_key(scopes=("read", "trade"))
    client = APIClient()
    me = signed(client, "GET", "/api/v1/me", key=api_key.key, secret=secret)
    assert me.status_code == 200, me.json()
    assert me.json()["email"] == user.email
    patched = signed(client, "PATCH", "/api/v1/me", key=api_key.key, secret=secret, body={"name": "Bot Owner"})
    assert patched.status_code == 200, patched.json()
    user.refresh_from_db()
    assert user.name == "Bot Owner"
    listed = signed(client, "GET", "/api/v1/api-keys", key=api_key.key, secret=secret, query="limit=5")
    assert listed.status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


@pytest.mark.django_db
def test_scopes_are_enforced(make_api_key, user):
    api_key, secret = make_api_key(scopes=("read",))
    response = signed(APIClient(), "PATCH", "/api/v1/me", key=api_key.key, secret=secret, body={"name": "Hacked"})
    assert response.status_code == 403
    assert response.json()["code"] == "api_key_scope"
    assert response.json()["details"] == {"required_scope": "trade"}
    user.refresh_from_db()
    assert user.name == "Trader"
    trade_only, trade_secret = make_api_key(scopes=("trade",))
    response = signed(APIClient(), "GET", "/api/v1/me", key=trade_only.key, secret=trade_secret)
    assert response.status_code == 403
    assert response.json()["code"] == "api_key_scope"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/api-keys", {"label": "x", "scopes": ["read"]}),
        ("POST", "/api/v1/me/password", {"old_password": "a", "new_password": "b"}),
        ("POST", "/api/v1/me/2fa/disable", {"otp_code": "123456"}),
        ("POST", "/api/v1/auth/logout-everywhere", None),
    ],
)
def test_api_keys_cannot_change_account_security(make_api_key, otp_user, method, path, body):
    api_key, secret = make_api_key(scopes=("read", "trade", "withdraw"))
    before = (ApiKey.objects.count(), User.objects.get(pk=otp_user.pk).password)
    response = signed(APIClient(), method, path, key=api_key.key, secret=secret, body=body)
    assert response.status_code == 403
    assert response.json()["code"] == "api_key_not_allowed"
    assert (ApiKey.objects.count(), User.objects.get(pk=otp_user.pk).password) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "tamper",
    [
        {"method": "GET"},  # signed as a GET, sent as a PATCH
        {"path": "/api/v1/me/other"},
        {"query": "limit=1"},
        {"body": b'{"name": "Someone else"}'},
        {"expires": 1},
    ],
)
def test_tampered_requests_are_refused(make_api_key, user, tamper):
    api_key, secret = make_api_key(scopes=("read", "trade"))
    response = signed(
        APIClient(), "PATCH", "/api/v1/me", key=api_key.key, secret=secret, body={"name": "Bot"}, sign_as=tamper
    )
    assert response.status_code == 401
    assert response.json()["code"] == "signature_invalid"
    user.refresh_from_db()
    assert user.name == "Trader"


@pytest.mark.django_db
def test_wrong_secret_and_unknown_key(make_api_key):
    api_key, _ = make_api_key()
    response = signed(APIClient(), "GET", "/api/v1/me", key=api_key.key, secret="not-the-secret")
    assert response.json()["code"] == "signature_invalid"
    response = signed(APIClient(), "GET", "/api/v1/me", key="no-such-key", secret="x")
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_invalid"


@pytest.mark.django_db
@pytest.mark.parametrize("offset_ms", [-1, -60_000, 31_000, 3_600_000])
def test_expired_or_too_distant_expiry_is_refused(make_api_key, offset_ms):
    api_key, secret = make_api_key()
    expires = int(time.time() * 1000) + offset_ms
    response = signed(APIClient(), "GET", "/api/v1/me", key=api_key.key, secret=secret, expires=expires)
    assert response.status_code == 401
    assert response.json()["code"] == "signature_expired"


@pytest.mark.django_db
def test_replayed_requests_are_refused(make_api_key, user):
    api_key, secret = make_api_key(scopes=("read", "trade"))
    expires = int(time.time() * 1000) + 10_000
    send = lambda: signed(  # noqa: E731
        APIClient(), "PATCH", "/api/v1/me", key=api_key.key, secret=secret, body={"name": "Once"}, expires=expires
    )
    assert send().status_code == 200
    User.objects.filter(pk=user.pk).update(name="Changed meanwhile")
    replay = send()
    assert replay.status_code == 401
    assert replay.json()["code"] == "signature_replayed"
    user.refresh_from_db()
    assert user.name == "Changed meanwhile"


@pytest.mark.django_db
def test_ip_allowlist(make_api_key):
    api_key, secret = make_api_key(ip_allowlist=["203.0.113.0/24", "2001:db8::1"])
    ok = signed(APIClient(), "GET", "/api/v1/me", key=api_key.key, secret=secret, REMOTE_ADDR="203.0.113.7")
    assert ok.status_code == 200
    ok6 = signed(APIClient(), "GET", "/api/v1/me", key=api_key.key, secret=secret, REMOTE_ADDR="2001:db8::1")
    assert ok6.status_code == 200
    refused = signed(APIClient(), "GET", "/api/v1/me", key=api_key.key, secret=secret, REMOTE_ADDR="198.51.100.1")
    assert refused.status_code == 403
    assert refused.json()["code"] == "ip_not_allowed"
    # a spoofed X-Forwarded-For is ignored unless NUM_PROXIES says a proxy sets it
    spoofed = signed(
        APIClient(),
        "GET",
        "/api/v1/me",
        key=api_key.key,
        secret=secret,
        REMOTE_ADDR="198.51.100.1",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
    )
    assert spoofed.json()["code"] == "ip_not_allowed"


@pytest.mark.django_db
def test_inactive_users_keys_are_refused(make_api_key, user):
    api_key, secret = make_api_key()
    User.objects.filter(pk=user.pk).update(is_active=False)
    response = signed(APIClient(), "GET", "/api/v1/me", key=api_key.key, secret=secret)
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_invalid"


def _views(resolver: URLResolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _views(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and hasattr(entry.callback, "cls"):
            yield prefix + str(entry.pattern), entry.callback.cls


def test_every_view_that_takes_api_keys_checks_their_scopes():
    """A view that overrides ``permission_classes`` must keep ``HasApiKeyScope`` (or refuse API keys).

    Public read-only views (``AllowAny``, no write methods) show nothing private, so they may skip it.
    """
    missing = []
    for route, view in _views(get_resolver()):
        if not route.startswith("api/v1/"):
            continue
        takes_keys = any(issubclass(a, ApiKeyAuthentication) for a in view.authentication_classes)
        checks = any(issubclass(p, HasApiKeyScope) for p in view.permission_classes)
        public = any(issubclass(p, AllowAny) for p in view.permission_classes)
        writes = any(hasattr(view, method) for method in ("post", "put", "patch", "delete"))
        if takes_keys and not checks and (writes or not public):
            missing.append(f"{route} ({view.__name__})")
    assert missing == []


def test_the_worked_example_in_docs_api_md_is_right():
    from pathlib import Path

    from accounts.api_keys import sign

    signature = sign(
        secret="R2x5dWlrX2V4YW1wbGVfc2VjcmV0X25vdF9yZWFsXzA",
        method="PATCH",
        path="/api/v1/me",
        query="",
        expires=1767225630000,
        body='{"name": "Grid bot owner"}',
    )
    assert signature == "f8c169083bf0c62bc0f4f73624f85d64d771d24bfffbf47401e748dc98240e45"
    assert signature in (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
