"""DRF authentication: JWT (with "log out everywhere") and signed API-key requests."""

from __future__ import annotations

import time
from typing import Any

from django.utils.translation import gettext_lazy
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework_simplejwt import authentication as jwt
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import aware_utcnow

from accounts.api_keys import api_key_authenticate
from accounts.models import ApiKey, User
from accounts.selectors import user_get_by_id
from accounts.services import AUTH_EPOCH_CLAIM, client_ip


class JWTAuthentication(jwt.JWTAuthentication):
    """simplejwt's bearer tokens, refused once the user has logged out everywhere since issue.

    The user is read afresh for every request (so a deactivation, a freeze or a "log out
    everywhere" counts from the next request on), with the same checks as simplejwt's
    ``get_user``, through a statement compiled once (``accounts.selectors.user_get_by_id``).

    A token's signature and claims are verified once per process: a client sends the
    same access token with every request until it expires, and decoding it (base64, JSON,
    the HMAC, the claim checks) is the same work each time. The claims of a token that
    passed are kept (``VERIFIED_MAX`` tokens, by their exact bytes); a repeat gets a fresh
    token object with a copy of them while it has not expired. Once it has, the token
    goes through the whole check again, which refuses it as before. Revocation does not
    depend on this: it is the user's ``auth_epoch``, read with the user.
    """

    def get_validated_token(self, raw_token: bytes) -> Token:
        known = _verified.get(raw_token)
        if known is not None:
            token_class, claims = known
            token = token_class.__new__(token_class)  # what Token.__init__ sets, without decoding again
            token.token, token.current_time, token.payload = raw_token, aware_utcnow(), dict(claims)
            if claims["exp"] > time.time() - token.get_token_backend().get_leeway().total_seconds():
                return token
            _verified.pop(raw_token, None)
        token = super().get_validated_token(raw_token)
        if not hasattr(token, "check_blacklist"):  # a token that can be blacklisted is checked every time
            if len(_verified) >= VERIFIED_MAX:
                _verified.clear()
            _verified[raw_token] = (type(token), dict(token.payload))
        return token

    def get_user(self, validated_token: Any) -> User:
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken(gettext_lazy("Token contained no recognizable user identification")) from exc
        user = user_get_by_id(pk=user_id)
        if user is None:
            raise AuthenticationFailed(gettext_lazy("User not found"), code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(gettext_lazy("User is inactive"), code="user_inactive")
        if validated_token.get(AUTH_EPOCH_CLAIM, 0) != user.auth_epoch:
            raise InvalidToken({"detail": "Token was revoked.", "code": "token_not_valid"})
        return user


VERIFIED_MAX = 4096
_verified: dict[bytes, tuple[type[Token], dict[str, Any]]] = {}  # raw token -> its class and claims


class ApiKeyAuthentication(BaseAuthentication):
    """A request signed with an API key (``X-KB-APIKEY``, ``X-KB-EXPIRES``, ``X-KB-SIGNATURE``).

    Without ``X-KB-APIKEY`` it steps aside for the other methods. ``request.auth`` is the
    ``ApiKey``; ``accounts.api.permissions.HasApiKeyScope`` then checks its scopes.
    """

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        meta = request._request.META
        key = meta.get("HTTP_X_KB_APIKEY")
        if not key:
            return None
        api_key = api_key_authenticate(
            key=key,
            expires=meta.get("HTTP_X_KB_EXPIRES", ""),
            signature=meta.get("HTTP_X_KB_SIGNATURE", ""),
            method=request._request.method or "",
            path=request._request.path,
            query=meta.get("QUERY_STRING", ""),
            body=request._request.body,
            ip=client_ip(request._request),
        )
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'KB-HMAC-SHA256 realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ApiKeyAuthentication"
    name = "apiKeySignature"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-KB-APIKEY",
            "description": "A signed request: X-KB-APIKEY, X-KB-EXPIRES (Unix ms) and X-KB-SIGNATURE "
            "(hex HMAC-SHA256 of METHOD\\nPATH\\nQUERY\\nEXPIRES\\nBODY). See docs/api.md.",
        }


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.JWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
