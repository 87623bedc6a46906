"""The project's URLs plus a view that fails, to count a 5xx."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from kootabase.urls import handler404, handler500, urlpatterns  # noqa: F401 - the same error handlers


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("broken on purpose")


urlpatterns = [*urlpatterns, path("test/broken/<int:number>", broken)]
