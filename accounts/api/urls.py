from django.urls import path

from accounts.api import views

urlpatterns = [
    path("auth/register", views.RegisterView.as_view(), name="auth-register"),
    path("auth/csrf", views.CsrfView.as_view(), name="auth-csrf"),
    path("auth/login", views.SessionLoginView.as_view(), name="auth-login"),
    path("auth/logout", views.SessionLogoutView.as_view(), name="auth-logout"),
    path("auth/logout-everywhere", views.LogoutEverywhereView.as_view(), name="auth-logout-everywhere"),
    path("auth/token", views.TokenObtainView.as_view(), name="auth-token"),
    path("auth/token/refresh", views.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("auth/token/revoke", views.TokenRevokeView.as_view(), name="auth-token-revoke"),
    path("me", views.MeView.as_view(), name="me"),
    path("me/password", views.PasswordChangeView.as_view(), name="me-password"),
    path("me/logins", views.LoginHistoryView.as_view(), name="me-logins"),
    path("me/2fa", views.OtpStatusView.as_view(), name="me-2fa"),
    path("me/2fa/totp", views.OtpEnrolView.as_view(), name="me-2fa-totp"),
    path("me/2fa/totp/confirm", views.OtpConfirmView.as_view(), name="me-2fa-totp-confirm"),
    path("me/2fa/recovery-codes", views.OtpRecoveryCodesView.as_view(), name="me-2fa-recovery-codes"),
    path("me/2fa/disable", views.OtpDisableView.as_view(), name="me-2fa-disable"),
    path("api-keys", views.ApiKeyListCreateView.as_view(), name="api-keys"),
    path("api-keys/<int:api_key_id>", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
]
