"""The API docs page: drf-spectacular's Swagger UI (from the sidecar package, no CDN) under the
same strict Content-Security-Policy as every other page.

drf-spectacular's plain view puts Swagger UI's start-up code in an inline <script>, and its page
template an inline <style> block. The split view loads the start-up code from a URL of its own
(`?script`, rendered from the same template with the CSRF header name and token), and
templates/api_docs.html replaces the page head with one that takes the style rules from
static/dockmon/api-docs.css. Nothing is relaxed for this page."""

from __future__ import annotations

from drf_spectacular.views import SpectacularSwaggerSplitView


class ApiDocsView(SpectacularSwaggerSplitView):
    template_name = "api_docs.html"
