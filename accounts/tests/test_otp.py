import base64
import time
from urllib.parse import parse_qs, urlparse

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.helpers import otp_code
from audit.models import AuditEvent


def _code_for_secret(secret: str) -> str:
    totp = TOTP(base64.b32decode(secret))
    totp.time = time.time()
    return f"{totp.token():06d}"


@pytest.mark.django_db
def test_enrol_confirm_and_status(auth_client, user):
    assert auth_client.get("/api/v1/me/2fa").json() == {"enabled": False, "recovery_codes_left": 0}
    enrol = auth_client.post("/api/v1/me/2fa/totp")
    assert enrol.status_code == 201, enrol.json()
    body = enrol.json()
    uri = urlparse(body["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert parse_qs(uri.query)["secret"] == [body["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["Kootabase"]
    # not on until confirmed
    assert auth_client.get("/api/v1/me/2fa").json()["enabled"] is False

    wrong = auth_client.post("/api/v1/me/2fa/totp/confirm", {"otp_code": "000000"})
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "otp_invalid"
    assert not TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    TOTPDevice.objects.filter(user=user).update(throttling_failure_count=0, throttling_failure_timestamp=None)

    confirmed = auth_client.post("/api/v1/me/2fa/totp/confirm", {"otp_code": _code_for_secret(body["secret"])})
    assert confirmed.status_code == 200, confirmed.json()
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert auth_client.get("/api/v1/me/2fa").json() == {"enabled": True, "recovery_codes_left": 10}
    assert AuditEvent.objects.filter(action="2fa.enabled", actor=user).count() == 1


@pytest.mark.django_db
def test_confirm_without_enrolment_and_enrol_twice(auth_client, otp_user):
    again = auth_client.post("/api/v1/me/2fa/totp")
    assert again.status_code == 409
    assert again.json()["code"] == "otp_already_enabled"
    assert TOTPDevice.objects.filter(user=otp_user).count() == 1


@pytest.mark.django_db
def test_disable_needs_a_valid_code(auth_client, otp_user):
    for body, code in [({}, "otp_required"), ({"otp_code": "123456"}, "otp_invalid")]:
        response = auth_client.post("/api/v1/me/2fa/disable", body)
        assert response.status_code == 403
        assert response.json()["code"] == code
        assert TOTPDevice.objects.filter(user=otp_user, confirmed=True).exists()
        TOTPDevice.objects.filter(user=otp_user).update(throttling_failure_count=0)
    ok = auth_client.post("/api/v1/me/2fa/disable", {"otp_code": otp_code(otp_user)})
    assert ok.status_code == 204
    assert not TOTPDevice.objects.filter(user=otp_user).exists()
    assert AuditEvent.objects.filter(action="2fa.disabled", actor=otp_user).exists()
    assert AuditEvent.objects.filter(action="2fa.failed", actor=otp_user).count() == 1


@pytest.mark.django_db
def test_recovery_codes_work_once_and_renewal_replaces_them(auth_client, otp_user):
    codes = auth_client.post("/api/v1/me/2fa/recovery-codes", {"otp_code": otp_code(otp_user)}).json()["recovery_codes"]
    assert len(codes) == 10
    renewed = auth_client.post("/api/v1/me/2fa/recovery-codes", {"otp_code": codes[0]})
    assert renewed.status_code == 200
    new_codes = renewed.json()["recovery_codes"]
    assert set(new_codes).isdisjoint(codes)
    assert auth_client.post("/api/v1/me/2fa/recovery-codes", {"otp_code": codes[1]}).json()["code"] == "otp_invalid"
    StaticDevice.objects.filter(user=otp_user).update(throttling_failure_count=0)
    # a recovery code turns 2FA off (lost phone), and works only once
    assert auth_client.post("/api/v1/me/2fa/disable", {"otp_code": new_codes[0].upper()}).status_code == 204
    assert auth_client.get("/api/v1/me/2fa").json() == {"enabled": False, "recovery_codes_left": 0}


@pytest.mark.django_db
def test_a_totp_code_works_only_once(auth_client, otp_user):
    code = otp_code(otp_user)
    assert auth_client.post("/api/v1/me/2fa/recovery-codes", {"otp_code": code}).status_code == 200
    replay = auth_client.post("/api/v1/me/2fa/recovery-codes", {"otp_code": code})
    assert replay.status_code == 403
    assert replay.json()["code"] == "otp_invalid"


@pytest.mark.django_db
def test_wrong_codes_back_off(auth_client, otp_user):
    assert auth_client.post("/api/v1/me/2fa/disable", {"otp_code": "111111"}).json()["code"] == "otp_invalid"
    throttled = auth_client.post("/api/v1/me/2fa/disable", {"otp_code": otp_code(otp_user)})
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "otp_throttled"
    assert int(throttled["Retry-After"]) >= 1
    assert TOTPDevice.objects.filter(user=otp_user, confirmed=True).exists()


@pytest.mark.django_db
def test_2fa_needs_login(api_client):
    for method, url in [("get", "/api/v1/me/2fa"), ("post", "/api/v1/me/2fa/totp"), ("post", "/api/v1/me/2fa/disable")]:
        assert getattr(api_client, method)(url).status_code == 401
