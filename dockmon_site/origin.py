"""WebSocket origin check.

Browsers always send Origin, so a cross-site page can be told apart and refused; the allowed
origins are ALLOWED_HOSTS plus CSRF_TRUSTED_ORIGINS. Non-browser clients (CLI tools, the API
with a token) send no Origin and are let through to authentication.
"""

from __future__ import annotations

from urllib.parse import urlparse

from channels.security.websocket import OriginValidator
from django.conf import settings


class DockMonOriginValidator(OriginValidator):
    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def origin_validator(application):
    allowed = list(settings.ALLOWED_HOSTS)
    for origin in getattr(settings, "CSRF_TRUSTED_ORIGINS", []):
        parsed = urlparse(origin)
        if parsed.hostname:
            allowed.append(parsed.hostname)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return DockMonOriginValidator(application, allowed)
