import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dockmon_site.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.authentication import TokenAuthMiddleware  # noqa: E402
from dockmon_site.origin import origin_validator  # noqa: E402
from dockmon_site.routing import websocket_urlpatterns  # noqa: E402
from dockmon_site.ws_stack import FlowControl, Guard  # noqa: E402

# WebSockets, outside in: flow control (needs daphne's own `send`), a guard that turns any
# failure into a close code (never a 500), the origin check, then session or token auth.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": FlowControl(Guard(origin_validator(AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))))),
    }
)
