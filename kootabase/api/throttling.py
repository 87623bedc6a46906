"""Rate limits: per user (or per anonymous client), per API key and per IP, in one check.

Each limit is a fixed-window counter in the project's cache (Redis in production, so
every web process shares them): the first request of a window creates the counter with
the window's length as its expiry, each request adds one, and a request that takes a
counter past its rate is refused with 429 ``throttled`` and ``Retry-After`` (the
whole seconds left in the counter's window; ``kootabase.api.errors``). On Redis all the counters of a
request move in one round trip: one small server-side script (``EVALSHA``) that runs, per
counter, the same ``SET NX EX`` / ``INCR`` / ``PTTL`` a pipeline would, at a fraction of
the client's cost of packing and parsing six commands.

The rates are DRF's ``DEFAULT_THROTTLE_RATES``: ``user``, ``anon``, ``api_key``, ``ip``.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

_DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/min"`` -> (600, 60): requests allowed and the window in seconds."""
    count, period = rate.split("/")
    return int(count), _DURATIONS[period[0]]


class RateLimitThrottle(BaseThrottle):
    """Every limit that applies to the request, counted in one round trip.

    A signed API-key request counts against its key (``api_key``) and its user
    (``user``); a token or session request against its user; an anonymous one against
    its IP (``anon``); and every request against its IP (``ip``), a ceiling for one
    address whoever is logged in.
    """

    THROTTLE_RATES: dict[str, str] | None = None  # None: DRF's DEFAULT_THROTTLE_RATES

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def rates(self) -> dict[str, str]:
        return self.THROTTLE_RATES if self.THROTTLE_RATES is not None else api_settings.DEFAULT_THROTTLE_RATES

    def limits(self, request: Request) -> list[tuple[str, int, int]]:
        """(cache key, allowed, window seconds) of each limit that applies."""
        from accounts.models import ApiKey

        idents: list[tuple[str, Any]] = []
        if request.user and request.user.is_authenticated:
            idents.append(("user", request.user.pk))
            if isinstance(request.auth, ApiKey):
                idents.append(("api_key", request.auth.pk))
        else:
            idents.append(("anon", self.get_ident(request)))
        idents.append(("ip", self.get_ident(request)))
        rates = self.rates()
        limits = []
        for scope, ident in idents:
            rate = rates.get(scope)
            if rate:
                allowed, window = parse_rate(rate)
                limits.append((f"throttle_{scope}_{ident}", allowed, window))
        return limits

    def allow_request(self, request: Request, view: Any) -> bool:
        limits = self.limits(request)
        if not limits:
            return True
        counts = _count(limits)
        refused = [ttl for (_, allowed, _), (count, ttl) in zip(limits, counts, strict=True) if count > allowed]
        if refused:
            self.wait_seconds = max(refused)
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds


def _count(limits: list[tuple[str, int, int]]) -> list[tuple[int, float]]:
    """Add one to each counter; returns (count, seconds left in its window) per limit."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return _count_redis(limits, backend)
    return _count_cache(limits)


# KEYS: the counters; ARGV: each one's window in seconds. Returns count, ms left, per counter.
_COUNT_SCRIPT = """
local replies = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'EX', ARGV[i], 'NX')
  replies[2 * i - 1] = redis.call('INCR', key)
  replies[2 * i] = redis.call('PTTL', key)
end
return replies
"""
_script: Any = None  # redis-py's Script: the script's SHA, loaded into a server on first use there


def _count_redis(limits: list[tuple[str, int, int]], backend: RedisCache) -> list[tuple[int, float]]:
    keys = [backend.make_and_validate_key(key) for key, _, _ in limits]
    client = backend._cache.get_client(keys[0], write=True)
    global _script
    if _script is None:
        _script = client.register_script(_COUNT_SCRIPT)
    replies = _script(keys=keys, args=[window for _, _, window in limits], client=client)
    return [(int(replies[2 * i]), max(int(replies[2 * i + 1]), 0) / 1000) for i in range(len(limits))]


def _count_cache(limits: list[tuple[str, int, int]]) -> list[tuple[int, float]]:
    """Any other cache backend (the embedded local-memory one): the window's end is
    stored beside the counter."""
    now = time.time()
    counts = []
    for key, _, window in limits:
        if cache.add(key, 0, window):
            cache.set(f"{key}:ends", now + window, window)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, window)
            cache.set(f"{key}:ends", now + window, window)
            count = 1
        ends = cache.get(f"{key}:ends") or now + window
        counts.append((count, max(ends - now, 0.0)))
    return counts
