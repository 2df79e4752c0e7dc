"""Liveness and readiness endpoints (no authentication)."""

from __future__ import annotations

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from dockmon_site import csp


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"


def _check_redis() -> str:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return "ok"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"


async def _check_channel_layer() -> str:
    """A message through the channel layer and back, on this process's own connections (those
    its WebSockets use): Redis can answer PING while the layer's connections are still broken."""
    from channels.layers import get_channel_layer

    from dockmon_site.channel_layer import check_layer

    layer = get_channel_layer()
    if layer is None:
        return "ok"
    try:
        await check_layer(layer, timeout=3.0)
        return "ok"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"


@never_cache
@require_GET
async def readyz(request):
    """Ready when the database, Redis and the channel layer all work (503 otherwise)."""
    checks = {
        "database": await sync_to_async(_check_database, thread_sensitive=True)(),
        "redis": await sync_to_async(_check_redis, thread_sensitive=False)(),
        "channel_layer": await _check_channel_layer(),
    }
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


# Its one style block is allowed by its hash (the Content-Security-Policy, dockmon_site/csp.py).
_UNAVAILABLE_STYLE = "body{font-family:system-ui,sans-serif;margin:3rem}"
_UNAVAILABLE_PAGE = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>DockMon: database unavailable</title>
<meta http-equiv="refresh" content="10"><style>{_UNAVAILABLE_STYLE}</style></head><body>
<h1>DockMon cannot reach its database</h1><p>The database is unavailable right now (restarting, or the network to it is down).
This page tries again every 10 seconds.</p></body></html>"""


def server_error(request):
    """handler500: a database that went away is a 503 with a clear message (JSON for the API), not
    an anonymous 500; anything else is Django's usual 500 page."""
    import sys

    from django.db import DatabaseError
    from django.http import HttpResponse
    from django.views import defaults

    exc = sys.exc_info()[1]
    if isinstance(exc, DatabaseError):
        if request.path.startswith("/api/") or "json" in request.headers.get("Accept", ""):
            response = JsonResponse({"detail": "The database is unavailable; try again shortly."}, status=503)
        else:
            response = csp.allow_style_block(HttpResponse(_UNAVAILABLE_PAGE, status=503), _UNAVAILABLE_STYLE)
        response["Retry-After"] = "10"
        return response
    return defaults.server_error(request)
