"""Authentication of a WebSocket connection, and the checks that keep it honest.

- ``{"op": "auth", "token": "<JWT access token>"}``: the same check as REST's bearer
  tokens (``accounts.api.authentication.JWTAuthentication``, "log out everywhere" included).
- ``{"op": "auth", "api_key": "<key>", "expires": <unix ms>, "signature": "<hex>"}``:
  an API-key signature in the REST scheme (``accounts.api_keys``) over the fixed request
  ``GET /ws/v1/`` with an empty query and the body ``auth``::

      payload = "GET\\n/ws/v1/\\n\\n" + expires + "\\nauth"

  The key needs the ``read`` scope; expiry, replay and the IP allow-list are checked as
  for REST.
- A browser logged in with a session cookie is authenticated at connect
  (``stream_auth_middleware``).

Each way gives a ``Grant``: what authenticated the connection and until when. A
connection must not outlive its grant: ``grants_revoked`` tells, for many connections in
a few queries, which grants no longer hold (the account disabled, logged out everywhere
since, the API key revoked, the session ended); a token's own expiry needs no query
(``Grant.expires_at``). The consumer closes such a connection (``marketdata.consumers``).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Literal

from channels.auth import get_user
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.utils import timezone
from rest_framework.exceptions import APIException

from accounts.api.authentication import JWTAuthentication
from accounts.api_keys import api_key_authenticate
from accounts.models import ApiKey, ApiKeyScope, User
from kootabase.errors import ServiceError

WS_PATH = "/ws/v1/"
WS_BODY = b"auth"

#: Why a grant ended: ``details.reason`` of the ``auth_expired`` frame and the close reason.
Reason = Literal["token_expired", "logged_out", "account_disabled", "api_key_revoked", "session_ended"]


@dataclass(frozen=True)
class Grant:
    """What authenticated a connection: the user, how, and the token's expiry (Unix
    seconds; None for an API key or a session, which hold until revoked or ended)."""

    user: User
    method: Literal["token", "api_key", "session"]
    epoch: int
    expires_at: float | None = None
    api_key_id: int | None = None
    session_key: str | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at


def ws_authenticate(*, message: dict[str, Any], ip: str) -> Grant:
    """The grant an ``auth`` message proves; ``ServiceError`` (code ``auth_failed`` or the
    API-key check's own code) otherwise."""
    if isinstance(message.get("token"), str):
        auth = JWTAuthentication()
        try:
            token = auth.get_validated_token(message["token"].encode())
            user = auth.get_user(token)
        except APIException as exc:
            raise ServiceError("auth_failed", "The token is invalid or expired.") from exc
        if not user.is_active:
            raise ServiceError("auth_failed", "The account is disabled.")
        return Grant(user=user, method="token", epoch=user.auth_epoch, expires_at=float(token["exp"]))
    if isinstance(message.get("api_key"), str):
        api_key = api_key_authenticate(
            key=message["api_key"],
            expires=str(message.get("expires", "")),
            signature=str(message.get("signature", "")),
            method="GET",
            path=WS_PATH,
            query="",
            body=WS_BODY,
            ip=ip,
        )
        if ApiKeyScope.READ not in api_key.scopes:
            raise ServiceError("api_key_scope", "This API key lacks the 'read' scope.")
        return Grant(user=api_key.user, method="api_key", epoch=api_key.user.auth_epoch, api_key_id=api_key.pk)
    raise ServiceError("auth_failed", 'Send "token", or "api_key" with "expires" and "signature".')


def session_grant(*, user: User, session_key: str | None) -> Grant:
    """The grant of a connection the session middleware authenticated at connect."""
    return Grant(user=user, method="session", epoch=user.auth_epoch, session_key=session_key)


def grants_revoked(*, grants: Mapping[Hashable, Grant]) -> dict[Hashable, Reason]:
    """Which of ``grants`` no longer hold, and why: at most three queries for any number."""
    if not grants:
        return {}
    now = time.time()
    rows = User.objects.filter(pk__in={g.user.pk for g in grants.values()}).values_list("pk", "is_active", "auth_epoch")
    users = {pk: (is_active, epoch) for pk, is_active, epoch in rows}
    key_ids = {g.api_key_id for g in grants.values() if g.api_key_id is not None}
    live_keys = (
        set(ApiKey.objects.filter(pk__in=key_ids, revoked_at__isnull=True).values_list("pk", flat=True))
        if key_ids
        else set()
    )
    live_sessions = _sessions_alive({g.session_key for g in grants.values() if g.session_key})
    revoked: dict[Hashable, Reason] = {}
    for name, grant in grants.items():
        is_active, epoch = users.get(grant.user.pk, (False, None))
        if not is_active:
            revoked[name] = "account_disabled"
        elif grant.expired(now):
            revoked[name] = "token_expired"
        elif grant.method == "api_key":
            if grant.api_key_id not in live_keys:
                revoked[name] = "api_key_revoked"
        elif epoch != grant.epoch:
            revoked[name] = "logged_out"
        elif grant.method == "session" and grant.session_key not in live_sessions:
            revoked[name] = "session_ended"
    return revoked


def _sessions_alive(keys: set[str]) -> set[str]:
    """The session keys that still exist and have not expired."""
    if not keys:
        return set()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store, DbSessionStore):  # the database (or cached database) store: one query
        return set(
            store.get_model_class()
            .objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
            .values_list("session_key", flat=True)
        )
    return {key for key in keys if store().exists(key)}


class SessionAtConnect:
    """ASGI middleware: ``scope["session"]`` and ``scope["user"]`` from the session cookie,
    read once when the socket connects (Django's session check included: a session from
    before a password change or "log out everywhere" gives no user).

    Channels' ``AuthMiddlewareStack`` does the same but also wraps every outgoing message
    to save the session if it changed; the stream never changes it, and on the fan-out's
    hot path (every frame to every subscriber) that check cost several percent of the
    server's CPU. Cookies come from channels' ``CookieMiddleware``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        session_key = scope["cookies"].get(settings.SESSION_COOKIE_NAME)
        scope = dict(scope, session=import_module(settings.SESSION_ENGINE).SessionStore(session_key))
        scope["user"] = await get_user(scope) if session_key else AnonymousUser()
        return await self.inner(scope, receive, send)


def stream_auth_middleware(inner: Any) -> Any:
    """The WebSocket stack's authentication: cookies, then ``SessionAtConnect``."""
    return CookieMiddleware(SessionAtConnect(inner))
