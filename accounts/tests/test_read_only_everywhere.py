"""A read-only API token may only read, on every API view.

DRF replaces the default permission classes (settings: signed in, and TokenWritePermission)
when a view names its own; so every view of every URL is looked at for what it enforces.
"""

from __future__ import annotations

from django.urls import URLResolver, get_resolver
from rest_framework import viewsets
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from accounts.api.base import AuditedViewMixin
from accounts.authentication import TokenWritePermission


def _api_views(patterns=None, prefix="/"):
    """(route, view function) of every DRF view the URL configuration serves."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from _api_views(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(getattr(pattern.callback, "cls", None), type) and issubclass(pattern.callback.cls, APIView):
            yield prefix + str(pattern.pattern), pattern.callback


def _effective_permissions(callback) -> dict[str, list]:
    """{method: the permission objects the view checks for it}."""
    actions = getattr(callback, "actions", None) or {method: None for method in callback.cls.http_method_names}
    result = {}
    for method, action in actions.items():
        view = callback.cls(**getattr(callback, "initkwargs", {}))
        view.action = action
        result[method] = view.get_permissions()
    return result


def test_every_api_view_that_takes_a_token_refuses_writes_with_a_read_only_one():
    """GIVEN every DRF view under every URL (views that accept no token at all, the login,
    aside) WHEN asked for the permission classes it checks for each method THEN the read-only
    token rule is among them."""
    checked, missing = [], []
    for route, callback in _api_views():
        if callback.cls.authentication_classes == []:
            continue  # exchanges a password for a token: nobody arrives with one
        for method, permissions in _effective_permissions(callback).items():
            checked.append((route, method))
            if not any(isinstance(permission, TokenWritePermission) for permission in permissions):
                missing.append(f"{method.upper()} {route}")
    assert not missing, f"views without TokenWritePermission: {missing}"
    routes = {route for route, _ in checked}
    assert len(routes) > 30 and any("permissions" in route for route in routes)


def test_a_view_naming_its_own_permission_classes_keeps_the_defaults():
    """GIVEN a view on the API base that lists only AllowAny THEN the default classes (signed
    in, read-only tokens read) still apply, before its own."""

    class Open(AuditedViewMixin, viewsets.ViewSet):
        permission_classes = [AllowAny]

    kinds = [type(permission).__name__ for permission in Open().get_permissions()]
    assert kinds == ["IsAuthenticated", "TokenWritePermission", "AllowAny"]
