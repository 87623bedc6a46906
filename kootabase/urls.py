"""URL map: the admin, the versioned REST API, its schema and docs, and the probes."""

from csp.constants import SELF
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from kootabase import health
from monitoring.views import metrics

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("wallets.api.urls")),
    path("", include("orders.api.urls")),
    path("", include("marketdata.api.urls")),
    path("", include("blockchain.api.urls")),
    path("", include("kyc.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file of its own: no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # ReDoc's search runs in a Web Worker it starts from a blob: URL; only this page may do that.
    path(
        "api/redoc/",
        csp_update({"worker-src": [SELF, "blob:"]})(SpectacularRedocView.as_view(url_name="schema")),
        name="api-redoc",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

handler404 = "kootabase.api.errors.not_found_view"
handler500 = "kootabase.api.errors.server_error_view"
