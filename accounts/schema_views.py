"""The schema and its docs page need a login: they describe every operation and field, a map of
the deployment for whoever finds it."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from drf_spectacular.views import SpectacularAPIView
from rest_framework.exceptions import NotAuthenticated
from rest_framework.settings import api_settings


class SchemaView(SpectacularAPIView):
    """GET /api/v1/schema/: 401 without a session or token."""

    # drf-spectacular's views serve anyone by default; these are the API's own.
    permission_classes = api_settings.DEFAULT_PERMISSION_CLASSES


class LoginRequiredPage:
    """For a browser page served by a DRF view (the docs): an anonymous visitor is sent to the
    login page and comes back after it; a wrong token is still a 401."""

    permission_classes = api_settings.DEFAULT_PERMISSION_CLASSES

    def handle_exception(self, exc):
        if isinstance(exc, NotAuthenticated):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)


def login_required_page(view_class):
    """`view_class` (e.g. the Swagger UI view) behind a login."""
    return type(view_class.__name__, (LoginRequiredPage, view_class), {"__module__": __name__})
