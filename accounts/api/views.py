"""Account endpoints: each view validates its input, calls one service, shapes the output."""

from __future__ import annotations

import base64

from django.contrib.auth import login, logout, update_session_auth_hash
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenBlacklistSerializer, TokenRefreshSerializer

from accounts import api_keys, otp, selectors, services
from accounts.api import serializers as s
from accounts.api.permissions import HasApiKeyScope
from accounts.models import ApiKeyScope
from kootabase.api.serializers import ErrorSerializer

ERRORS = dict.fromkeys((400, 401, 429), ErrorSerializer)
OTP_ERRORS = dict.fromkeys((400, 401, 403, 409, 429), ErrorSerializer)


class AnonymousView(APIView):
    """An endpoint that takes credentials in its body, not from the caller's session or token."""

    permission_classes = [AllowAny, HasApiKeyScope]
    authentication_classes: list = []

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class RegisterView(APIView):
    permission_classes = [AllowAny, HasApiKeyScope]
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

    permission_classes = [AllowAny, HasApiKeyScope]

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
    permission_classes = [AllowAny, HasApiKeyScope]

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
    api_key_scopes = {"GET": ApiKeyScope.READ, "PATCH": ApiKeyScope.TRADE}

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
    @extend_schema(
        tags=["account"],
        request=s.PasswordChangeInput,
        responses={204: OpenApiResponse(description="Changed; every refresh token is revoked."), **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = s.PasswordChangeInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.user_change_password(user=request.user, request=request._request, **data.validated_data)
        if request.user.is_authenticated and hasattr(request._request, "session"):
            update_session_auth_hash(request._request, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutEverywhereView(APIView):
    """End every session, refresh token and access token of the caller, on every device."""

    @extend_schema(tags=["auth"], request=None, responses={204: None, 401: ErrorSerializer})
    def post(self, request: Request) -> Response:
        services.user_logout_everywhere(user=request.user, request=request._request)
        if hasattr(request._request, "session"):
            logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LoginHistoryView(generics.ListAPIView):
    """Logins to the caller's account, successful and failed: time, IP, user agent."""

    serializer_class = s.LoginEventSerializer

    def get_queryset(self):
        return selectors.login_history(user=self.request.user)

    @extend_schema(tags=["account"])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


# --- Two-factor authentication --------------------------------------------------------


class OtpStatusView(APIView):
    @extend_schema(tags=["2fa"], responses={200: s.OtpStatusOutput, 401: ErrorSerializer})
    def get(self, request: Request) -> Response:
        return Response(otp.otp_status(user=request.user))


class OtpEnrolView(APIView):
    """Start 2FA: returns the secret and the otpauth:// URI to show as a QR code."""

    @extend_schema(tags=["2fa"], request=None, responses={201: s.OtpEnrolOutput, **OTP_ERRORS})
    def post(self, request: Request) -> Response:
        device = otp.otp_enrol(user=request.user)
        secret = base64.b32encode(device.bin_key).decode()
        return Response({"secret": secret, "otpauth_uri": device.config_url}, status=status.HTTP_201_CREATED)


class OtpConfirmView(APIView):
    """Finish enrolment with a first code; returns the recovery codes, once."""

    @extend_schema(tags=["2fa"], request=s.OtpCodeInput, responses={200: s.RecoveryCodesOutput, **OTP_ERRORS})
    def post(self, request: Request) -> Response:
        data = s.OtpCodeInput(data=request.data)
        data.is_valid(raise_exception=True)
        codes = otp.otp_confirm(user=request.user, code=data.validated_data["otp_code"], request=request._request)
        return Response({"recovery_codes": codes})


class OtpRecoveryCodesView(APIView):
    """Replace the recovery codes (needs a current code)."""

    @extend_schema(tags=["2fa"], request=s.OtpCodeInput, responses={200: s.RecoveryCodesOutput, **OTP_ERRORS})
    def post(self, request: Request) -> Response:
        data = s.OtpCodeInput(data=request.data)
        data.is_valid(raise_exception=True)
        codes = otp.otp_recovery_codes_renew(
            user=request.user, code=data.validated_data["otp_code"], request=request._request
        )
        return Response({"recovery_codes": codes})


class OtpDisableView(APIView):
    """Turn 2FA off (needs a current code or a recovery code)."""

    @extend_schema(tags=["2fa"], request=s.OtpCodeInput, responses={204: None, **OTP_ERRORS})
    def post(self, request: Request) -> Response:
        data = s.OtpCodeInput(data=request.data)
        data.is_valid(raise_exception=True)
        otp.otp_disable(user=request.user, code=data.validated_data["otp_code"], request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- API keys -------------------------------------------------------------------------


class ApiKeyListCreateView(generics.ListAPIView):
    """The caller's active API keys; POST creates one (needs 2FA)."""

    serializer_class = s.ApiKeySerializer

    def get_queryset(self):
        return selectors.api_keys_active(user=self.request.user)

    @extend_schema(tags=["api-keys"])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["api-keys"], request=s.ApiKeyCreateInput, responses={201: s.ApiKeyCreatedSerializer, **OTP_ERRORS}
    )
    def post(self, request: Request) -> Response:
        data = s.ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        created = api_keys.api_key_create(user=request.user, request=request._request, **data.validated_data)
        body = s.ApiKeyCreatedSerializer(created.api_key, context={"secret": created.secret}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    """Revoke one of the caller's API keys (at once; the key id is refused from then on)."""

    @extend_schema(tags=["api-keys"], responses={204: None, 401: ErrorSerializer, 404: ErrorSerializer})
    def delete(self, request: Request, api_key_id: int) -> Response:
        api_keys.api_key_revoke(user=request.user, api_key_id=api_key_id, request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)
