"""URL map: the admin, the versioned REST API, its schema and docs, and the probes."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from kootabase import health

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("wallets.api.urls")),
    path("", include("orders.api.urls")),
    path("", include("marketdata.api.urls")),
    path("", include("blockchain.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]

handler404 = "kootabase.api.errors.not_found_view"
handler500 = "kootabase.api.errors.server_error_view"
