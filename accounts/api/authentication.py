"""DRF authentication: JWT (with "log out everywhere") and signed API-key requests."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework_simplejwt import authentication as jwt
from rest_framework_simplejwt.exceptions import InvalidToken

from accounts.api_keys import api_key_authenticate
from accounts.models import ApiKey, User
from accounts.services import AUTH_EPOCH_CLAIM, client_ip


class JWTAuthentication(jwt.JWTAuthentication):
    """simplejwt's bearer tokens, refused once the user has logged out everywhere since issue."""

    def get_user(self, validated_token: Any) -> User:
        user = super().get_user(validated_token)
        if validated_token.get(AUTH_EPOCH_CLAIM, 0) != user.auth_epoch:
            raise InvalidToken({"detail": "Token was revoked.", "code": "token_not_valid"})
        return user


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
