"""Account endpoints: each view validates its input, calls one service, shapes the output."""

from __future__ import annotations

from django.contrib.auth import login, logout, update_session_auth_hash
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenBlacklistSerializer, TokenRefreshSerializer

from accounts import services
from accounts.api import serializers as s
from kootabase.api.serializers import ErrorSerializer

ERRORS = dict.fromkeys((400, 401, 429), ErrorSerializer)


class AnonymousView(APIView):
    """An endpoint that takes credentials in its body, not from the caller's session or token."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class RegisterView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "register"

    @extend_schema(
        tags=["auth"], request=s.RegisterInput, responses={201: s.UserSerializer, 409: ErrorSerializer, **ERRORS}
    )
    def post(self, request: Request) -> Response:
        data = s.RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data)
        return Response(s.UserSerializer(user).data, status=status.HTTP_201_CREATED)


class CsrfView(APIView):
    """Sets the CSRF cookie a browser client echoes in ``X-CSRFToken`` on session writes."""

    permission_classes = [AllowAny]

    @extend_schema(tags=["auth"], responses={200: s.CsrfOutput})
    @method_decorator(ensure_csrf_cookie)
    def get(self, request: Request) -> Response:
        return Response({"csrf_token": get_token(request)})


@method_decorator(csrf_protect, name="dispatch")
class SessionLoginView(AnonymousView):
    """Web login: starts a session (cookie)."""

    @extend_schema(tags=["auth"], request=s.LoginInput, responses={200: s.UserSerializer, **ERRORS})
    def post(self, request: Request) -> Response:
        data = s.LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_authenticate(request=request._request, **data.validated_data)
        login(request._request, user, backend="django.contrib.auth.backends.ModelBackend")
        return Response(s.UserSerializer(user).data)


class SessionLogoutView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(tags=["auth"], request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenObtainView(AnonymousView):
    """Mobile and script login: a short-lived access token and a rotating refresh token."""

    @extend_schema(tags=["auth"], request=s.LoginInput, responses={200: s.TokenPairOutput, **ERRORS})
    def post(self, request: Request) -> Response:
        data = s.LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_authenticate(request=request._request, **data.validated_data)
        tokens = services.tokens_issue(user=user)
        return Response({**tokens, "user": s.UserSerializer(user).data})


class TokenRefreshView(AnonymousView):
    """Trade a refresh token for a new access token and a new refresh token (the old one is revoked)."""

    @extend_schema(tags=["auth"], request=s.RefreshInput, responses={200: s.AccessOutput, **ERRORS})
    def post(self, request: Request) -> Response:
        s.RefreshInput(data=request.data).is_valid(raise_exception=True)
        refresh = TokenRefreshSerializer(data=request.data)
        try:
            refresh.is_valid(raise_exception=True)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        return Response(refresh.validated_data)


class TokenRevokeView(AnonymousView):
    """Revoke a refresh token (mobile logout)."""

    @extend_schema(tags=["auth"], request=s.RefreshInput, responses={204: None, **ERRORS})
    def post(self, request: Request) -> Response:
        s.RefreshInput(data=request.data).is_valid(raise_exception=True)
        revoke = TokenBlacklistSerializer(data=request.data)
        try:
            revoke.is_valid(raise_exception=True)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=["account"], responses={200: s.UserSerializer, 401: ErrorSerializer})
    def get(self, request: Request) -> Response:
        return Response(s.UserSerializer(request.user).data)

    @extend_schema(tags=["account"], request=s.MeUpdateInput, responses={200: s.UserSerializer, **ERRORS})
    def patch(self, request: Request) -> Response:
        data = s.MeUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        user = services.user_update(user=request.user, **data.validated_data)
        return Response(s.UserSerializer(user).data)


class PasswordChangeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["account"],
        request=s.PasswordChangeInput,
        responses={204: OpenApiResponse(description="Changed; every refresh token is revoked."), **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = s.PasswordChangeInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.user_change_password(user=request.user, **data.validated_data)
        if request.user.is_authenticated and hasattr(request._request, "session"):
            update_session_auth_hash(request._request, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
