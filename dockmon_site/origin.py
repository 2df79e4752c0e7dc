"""WebSocket origin check.

Browsers always send Origin with a WebSocket handshake, and a page may open a socket to any
address: the origin is how a page of another site (or of another program on this machine, on
another port) is told apart from DockMon's own pages, which would otherwise ride on the
browser's session cookie. An origin is allowed when its scheme, host and port are exactly:

- the request's own address: its Host (X-Forwarded-Host with USE_X_FORWARDED_HOST), which must
  itself be one of ALLOWED_HOSTS, and its scheme (ws → http, wss → https; https also when
  SECURE_PROXY_SSL says the proxy in front received HTTPS); or
- one of CSRF_TRUSTED_ORIGINS ("https://*.example.org" covers example.org's subdomains, on the
  port given, or the scheme's default port).

Anything else, including a malformed or "null" origin, is refused (HTTP 403 on the handshake).
A handshake without Origin comes from a program, not a browser page (CLI tools, scripts with a
token): it is let through to authentication.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """'http://Host:8000' → ('http', 'host', 8000); None when it is not a plain http(s) origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme]


def _headers(scope) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.lower(), value)
    return headers


def _allowed_hosts() -> list[str]:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's HttpRequest.get_host()
    return allowed


def request_origin(scope) -> tuple[str, str, int] | None:
    """The origin a page served by this very request address would have; None when the Host is
    missing or not one of ALLOWED_HOSTS (a DNS-rebinding name must not vouch for itself)."""
    headers = _headers(scope)
    host = headers.get(b"host", b"").decode("latin1")
    if settings.USE_X_FORWARDED_HOST and headers.get(b"x-forwarded-host"):
        host = headers[b"x-forwarded-host"].decode("latin1").split(",")[0].strip()
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    secure = scope.get("scheme", "ws") in ("wss", "https")
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name = proxy_header[0].lower().removeprefix("http_").replace("_", "-").encode("latin1")
        forwarded = headers.get(name)
        if forwarded is not None:
            secure = forwarded.decode("latin1").split(",")[0].strip().lower() == proxy_header[1].lower()
    return parse_origin(f"{'https' if secure else 'http'}://{host}")


def _trusted_match(origin: tuple[str, str, int], pattern: str) -> bool:
    wildcard = "://*." in pattern
    trusted = parse_origin(pattern.replace("://*.", "://", 1) if wildcard else pattern)
    if trusted is None:
        return False
    scheme, host, port = trusted
    if origin[0] != scheme or origin[2] != port:
        return False
    return origin[1] == host or (wildcard and origin[1].endswith("." + host))


def origin_allowed(scope) -> bool:
    headers = _headers(scope)
    raw = headers.get(b"origin")
    if raw is None:
        return True
    origin = parse_origin(raw.decode("latin1"))
    if origin is None:
        return False
    if origin == request_origin(scope):
        return True
    return any(_trusted_match(origin, pattern) for pattern in getattr(settings, "CSRF_TRUSTED_ORIGINS", []))


class DockMonOriginValidator:
    """ASGI wrapper: refuses a WebSocket whose Origin is not this site's (see the module doc)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            headers = _headers(scope)
            logger.warning("WebSocket refused: origin %s is not this site (host %s)",
                           headers.get(b"origin", b"").decode("latin1")[:200], headers.get(b"host", b"").decode("latin1")[:200])
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def origin_validator(application):
    return DockMonOriginValidator(application)
