"""Rate limits per user, per API key and per IP: 429 with Retry-After, counters in the shared cache."""

from contextlib import contextmanager

import pytest
from django.conf import settings
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from accounts.tests.helpers import signed
from kootabase.api.throttling import RateLimitThrottle


@contextmanager
def rates(**overrides):
    RateLimitThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, **overrides}
    try:
        yield
    finally:
        RateLimitThrottle.THROTTLE_RATES = None


@pytest.mark.django_db
def test_each_api_key_has_its_own_limit(make_api_key):
    first, first_secret = make_api_key(label="one")
    second, second_secret = make_api_key(label="two")
    with rates(api_key="2/min"):
        codes = [signed(APIClient(), "GET", "/api/v1/me", key=first.key, secret=first_secret) for _ in range(3)]
        other = signed(APIClient(), "GET", "/api/v1/me", key=second.key, secret=second_secret)
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert codes[-1].json()["code"] == "throttled"
    assert int(codes[-1]["Retry-After"]) > 0
    assert other.status_code == 200


@pytest.mark.django_db
def test_each_ip_has_a_ceiling_even_when_logged_in(auth_client, other_client):
    with rates(ip="3/min"):
        mine = [auth_client.get("/api/v1/me", REMOTE_ADDR="192.0.2.1").status_code for _ in range(3)]
        theirs = other_client.get("/api/v1/me", REMOTE_ADDR="192.0.2.1")
        elsewhere = other_client.get("/api/v1/me", REMOTE_ADDR="192.0.2.2")
    assert mine == [200, 200, 200]
    assert theirs.status_code == 429
    assert "Retry-After" in theirs
    assert elsewhere.status_code == 200


@pytest.mark.django_db
def test_each_user_has_a_limit_across_ips(auth_client, other_client):
    with rates(user="2/min"):
        codes = [auth_client.get("/api/v1/me", REMOTE_ADDR=f"192.0.2.{i}").status_code for i in range(3)]
        other = other_client.get("/api/v1/me")
    assert codes == [200, 200, 429]
    assert other.status_code == 200


@pytest.mark.django_db
def test_a_window_ends_and_the_counter_starts_again(auth_client):
    from django.core.cache import cache

    with rates(user="1/min"):
        assert auth_client.get("/api/v1/me").status_code == 200
        refused = auth_client.get("/api/v1/me")
        assert refused.status_code == 429
        assert 0 < int(refused["Retry-After"]) <= 60
        cache.clear()  # the window is over: its counters expire
        assert auth_client.get("/api/v1/me").status_code == 200


@pytest.mark.redis
@pytest.mark.django_db
def test_throttle_counters_live_in_redis(make_api_key):
    import redis

    assert settings.CACHES["default"]["BACKEND"] == "kootabase.cache.RedisCache"
    api_key, secret = make_api_key()
    assert signed(APIClient(), "GET", "/api/v1/me", key=api_key.key, secret=secret).status_code == 200
    server = redis.Redis.from_url(settings.REDIS_URL)
    [counter] = server.keys(f"*throttle_api_key_{api_key.pk}")
    assert int(server.get(counter)) == 1 and 0 < server.pttl(counter) <= 60_000  # a plain counter with its window
    assert not server.keys("*throttle_*:ends")  # the pipelined path, not the generic cache one
    assert server.keys(f"*api-key-signature:{api_key.pk}:*")  # the replay guard is shared too
