"""The one ASGI application: HTTP through Django, WebSocket through Channels, and the
lifespan hook that starts the embedded matchers when there is no Redis."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kootabase.settings")

from kootabase.asgi_handler import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from kootabase.routing import websocket_urlpatterns  # noqa: E402
from marketdata.auth import stream_auth_middleware  # noqa: E402
from marketdata.embedded import Lifespan  # noqa: E402
from monitoring.websocket import ConnectionCounter  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Counted per process for the health dashboard (monitoring.websocket).
        "websocket": ConnectionCounter(
            AllowedHostsOriginValidator(stream_auth_middleware(URLRouter(websocket_urlpatterns)))
        ),
        # Embedded mode runs the matchers in this process (marketdata.embedded).
        "lifespan": Lifespan(),
    }
)

# What start-up loaded (the apps, the URL conf and every view it imports) lives as long as
# the process. Out of the collector's sight, a full collection no longer walks it: on a
# web worker that walk was a 60-100 ms pause of every request in the process.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018 - imports the views now, not on the first request
gc.freeze()
