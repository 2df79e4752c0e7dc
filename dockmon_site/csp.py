"""Content-Security-Policy on every response.

DockMon's pages load their code from files under /static/ only (no inline <script>, no inline
event handlers, no eval) and their styles from app.css only (no style attributes), so the policy
can be strict: a script or style injected into a page through some value that escaped escaping is
not run. Server data reaches a page script through `json_script` (a <script type="application/json">
block, which the browser never executes) or data-* attributes.

'self' in connect-src also covers the WebSocket (ws:/wss: to the page's own host and port): CSP
level 3, as current Chromium, Firefox and Safari implement it.

A view whose response needs more relaxes that one response with `relax()` (or
`allow_style_block()`: one known inline <style> block by its hash, as guardian's object-permission
page needs); nothing is relaxed globally. The API docs page needs nothing (dockmon_site/api_docs.py).
One kind of response is relaxed here: Django REST framework's browsable API (the HTML a browser
gets at /api/v1/...) has style attributes in its templates, so it allows inline styles; its
scripts are files and stay 'self'. This module imports no app.
"""

from __future__ import annotations

import base64
import hashlib

from django.conf import settings

HEADER = "Content-Security-Policy"

# The policy, directive → sources. Everything not listed falls back to default-src.
POLICY: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "connect-src": ("'self'",),
    "font-src": ("'self'",),
    "object-src": ("'none'",),
    "base-uri": ("'self'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
}


# What the browsable API's responses add (see above).
BROWSABLE_API_EXTRA: dict[str, tuple[str, ...]] = {"style-src": ("'unsafe-inline'",)}


def header_value(extra: dict[str, tuple[str, ...]] | None = None) -> str:
    """The header for POLICY plus `extra` sources per directive."""
    directives = {name: list(sources) for name, sources in POLICY.items()}
    for name, sources in (extra or {}).items():
        directives.setdefault(name, list(POLICY["default-src"]))
        directives[name] += [s for s in sources if s not in directives[name]]
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def relax(response, directive: str, *sources: str):
    """Add `sources` to one directive for this response only (say why where you call it)."""
    extra = getattr(response, "csp_extra", None) or {}
    extra[directive] = tuple(extra.get(directive, ())) + sources
    response.csp_extra = extra
    return response


def allow_style_block(response, content: str):
    """Allow one inline <style> block whose text is exactly `content` (by its sha256) on this
    response; any other inline style stays blocked."""
    digest = base64.b64encode(hashlib.sha256(content.encode()).digest()).decode()
    return relax(response, "style-src", f"'sha256-{digest}'")


class ContentSecurityPolicyMiddleware:
    """Sets the header on every response that has none yet (static files are answered by WhiteNoise
    before this runs and need none). With DEBUG on, Django's own technical 404/500 pages (inline
    styles and scripts) are left without it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if HEADER in response:
            return response
        if settings.DEBUG and response.status_code in (404, 500):
            return response
        extra = getattr(response, "csp_extra", None)
        if getattr(getattr(response, "accepted_renderer", None), "format", None) == "api":  # DRF's browsable API
            extra = {**BROWSABLE_API_EXTRA, **(extra or {})}
        response[HEADER] = header_value(extra)
        return response
