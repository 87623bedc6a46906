import pytest
from channels.testing.websocket import WebsocketCommunicator
from django.core.management import call_command
from django.test import Client

from kootabase.asgi import application


def test_healthz(client: Client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_every_part(client: Client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert set(response.json()["checks"]) == {"database", "cache", "channel_layer", "broker"}


@pytest.mark.django_db
def test_readyz_names_the_failing_part(client: Client, monkeypatch):
    from kootabase import health

    def broken() -> None:
        raise ConnectionError("connection refused")

    monkeypatch.setitem(health.CHECKS, "broker", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "not_ready"
    assert "broker" in body["message"]
    assert body["details"]["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_readyz_does_not_wait_for_ever_on_the_channel_layer(client: Client, monkeypatch):
    """A round trip that does not come back in time names the channel layer (a probe that
    waited for ever would hold its request thread for ever)."""
    from kootabase import health

    monkeypatch.setattr(health, "CHANNEL_LAYER_TIMEOUT", 0.0)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["details"]["checks"]["channel_layer"].startswith("error: TimeoutError")


def test_openapi_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/me" in (tmp_path / "schema.yaml").read_text()


@pytest.mark.django_db
def test_api_docs_render(client: Client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/v1/no-such-thing", 404, "not_found"),
        ("delete", "/api/v1/me", 401, "not_authenticated"),
        ("put", "/api/v1/auth/register", 405, "method_not_allowed"),
    ],
)
def test_errors_share_one_format(api_client, method, path, status, code):
    response = getattr(api_client, method)(path)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert set(response.json()) == {"code", "message", "details"}


@pytest.mark.django_db
def test_unsupported_media_type(auth_client):
    response = auth_client.generic("PATCH", "/api/v1/me", "name=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.mark.django_db
def test_anonymous_requests_are_throttled(api_client, settings):
    from rest_framework.settings import api_settings

    from kootabase.api.throttling import RateLimitThrottle

    RateLimitThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, "anon": "3/min"}
    try:
        codes = [api_client.get("/api/v1/auth/csrf").status_code for _ in range(4)]
        public = api_client.get("/api/v1/markets")  # the public market data too
    finally:
        RateLimitThrottle.THROTTLE_RATES = None
    assert codes == [200, 200, 200, 429]
    assert public.status_code == 429


@pytest.mark.django_db(transaction=True)
def test_websocket_ping_and_error_frames():
    from asgiref.sync import async_to_sync

    async def scenario() -> None:
        communicator = WebsocketCommunicator(application, "/ws/v1/", headers=[(b"origin", b"http://127.0.0.1")])
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_to(text_data='{"op": "ping", "id": 7}')
        assert await communicator.receive_json_from() == {"op": "pong", "id": 7}
        await communicator.send_to(text_data="{oops")
        assert (await communicator.receive_json_from())["code"] == "malformed_json"
        await communicator.send_to(text_data='{"op": "dance"}')
        assert (await communicator.receive_json_from())["code"] == "unknown_op"
        await communicator.send_to(text_data='{"op": "ping"}')
        assert (await communicator.receive_json_from())["op"] == "pong"
        await communicator.disconnect()

    async_to_sync(scenario)()
