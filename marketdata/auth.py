"""Authentication of a WebSocket connection by its ``auth`` message.

- ``{"op": "auth", "token": "<JWT access token>"}``: the same check as REST's bearer
  tokens (``accounts.api.authentication.JWTAuthentication``, "log out everywhere" included).
- ``{"op": "auth", "api_key": "<key>", "expires": <unix ms>, "signature": "<hex>"}``:
  an API-key signature in the REST scheme (``accounts.api_keys``) over the fixed request
  ``GET /ws/v1/`` with an empty query and the body ``auth``::

      payload = "GET\\n/ws/v1/\\n\\n" + expires + "\\nauth"

  The key needs the ``read`` scope; expiry, replay and the IP allow-list are checked as
  for REST.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import APIException

from accounts.api.authentication import JWTAuthentication
from accounts.api_keys import api_key_authenticate
from accounts.models import ApiKeyScope, User
from kootabase.errors import ServiceError

WS_PATH = "/ws/v1/"
WS_BODY = b"auth"


def ws_authenticate(*, message: dict[str, Any], ip: str) -> User:
    """The user an ``auth`` message proves; ``ServiceError`` (code ``auth_failed`` or the
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
        return user
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
        return api_key.user
    raise ServiceError("auth_failed", 'Send "token", or "api_key" with "expires" and "signature".')
