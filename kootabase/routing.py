"""WebSocket routes; every app adds its consumers here."""

from django.urls import path

from marketdata.consumers import StreamConsumer

websocket_urlpatterns = [
    path("ws/v1/", StreamConsumer.as_asgi()),
]
