"""The health dashboard (a back-office page and its JSON) and the Prometheus endpoint.

- ``/admin/dashboard/`` and ``/admin/dashboard/data``: added to the back-office site by
  ``admin_urls`` (``accounts.admin_site``), so the site's login, 2FA and staff checks run
  first; then the ``monitoring.view_dashboard`` permission is required.
- ``/metrics``: Prometheus text format for a caller with ``Authorization: Bearer
  <METRICS_TOKEN>``. Without a configured token, or with a wrong or missing one, it is 404,
  like any unknown path: the endpoint does not reveal that it exists.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from monitoring.metrics import render
from monitoring.selectors import dashboard_data

PERMISSION = "monitoring.view_dashboard"
DATA_REFRESH_SECONDS = 15  # how often the page reloads its numbers


def _check_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


def _dashboard(site: Any) -> Any:
    @require_GET
    def dashboard(request: HttpRequest) -> TemplateResponse:
        _check_permission(request)
        context = {
            **site.each_context(request),
            "title": "Health dashboard",
            "data": dashboard_data(),
            "data_url": reverse(f"{site.name}:dashboard_data"),
            "refresh_seconds": DATA_REFRESH_SECONDS,
        }
        return TemplateResponse(request, "admin/monitoring/dashboard.html", context)

    return dashboard


@require_GET
def dashboard_data_view(request: HttpRequest) -> JsonResponse:
    _check_permission(request)
    return JsonResponse(dashboard_data())


def admin_urls(site: Any) -> list[URLPattern]:
    """The dashboard's URLs for the back-office site ``site`` (wrapped in its ``admin_view``)."""
    return [
        path("dashboard/", site.admin_view(_dashboard(site)), name="dashboard"),
        path("dashboard/data", site.admin_view(dashboard_data_view), name="dashboard_data"),
    ]


def admin_app_entry(request: HttpRequest, site: Any) -> dict[str, Any] | None:
    """The dashboard as an entry of the back office's app list (index page and sidebar)."""
    if not request.user.has_perm(PERMISSION):
        return None
    url = reverse(f"{site.name}:dashboard")
    return {
        "name": "Monitoring",
        "app_label": "monitoring",
        "app_url": url,
        "has_module_perms": True,
        "models": [
            {
                "name": "Health dashboard",
                "object_name": "Dashboard",
                "admin_url": url,
                "add_url": None,
                "view_only": True,
                "perms": {"add": False, "change": False, "delete": False, "view": True},
            }
        ],
    }


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@csrf_exempt  # so that a POST without the token gets the same 404, not a CSRF failure
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        raise Http404
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
