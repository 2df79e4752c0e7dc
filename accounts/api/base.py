"""Base pieces for API views of every app: the rules every view keeps, the audit naming of
the object a call touched, and model-level rights for administration endpoints."""

from __future__ import annotations

import re

from rest_framework import permissions as drf_permissions
from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings

from accounts import audit
from accounts.roles import is_signed_in
from dockmon_site.api import Metadata

# A container's key as it appears in URLs: "{host uuid}:{12 hex}".
CONTAINER_KEY_PATTERN = r"[0-9a-fA-F-]{36}:[0-9a-f]{12}"
_CONTAINER_KEY = re.compile(rf"^{CONTAINER_KEY_PATTERN}$")


def with_default_permissions(permission_classes) -> list:
    """REST_FRAMEWORK's DEFAULT_PERMISSION_CLASSES (signed in; a read-only token may only
    read), then `permission_classes` not already among them, as instances."""
    defaults = list(api_settings.DEFAULT_PERMISSION_CLASSES)
    return [permission() for permission in [*defaults, *(cls for cls in permission_classes if cls not in defaults)]]


class AuditedViewMixin:
    """The base of API views: the default permission classes always apply, and the object of
    an unsafe call is named on its audit row (AuditMiddleware writes the row).

    A view's `permission_classes` add to the defaults instead of replacing them (DRF's own
    rule), so no view can drop the read-only token rule by listing its own classes.

    Also: a URL parameter named in `container_key_kwargs` that cannot be a container key is
    404 before any query (after authentication, so anonymous callers still get 401), and
    OPTIONS never fails on an object lookup (dockmon_site.api.Metadata).
    """

    container_key_kwargs = ("key",)
    metadata_class = Metadata

    def get_permissions(self):
        return with_default_permissions(self.permission_classes)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        for name in self.container_key_kwargs:
            value = kwargs.get(name)
            if value is not None and not _CONTAINER_KEY.match(str(value)):
                raise NotFound("No such container.")

    def get_object(self):
        obj = super().get_object()
        if self.request.method not in SAFE_METHODS:
            audit.note(self.request, obj=obj)
        return obj

    def get_serializer(self, *args, **kwargs):
        serializer = super().get_serializer(*args, **kwargs)
        self._audit_serializer = serializer
        return serializer

    def finalize_response(self, request, response, *args, **kwargs):
        serializer = getattr(self, "_audit_serializer", None)
        instance = getattr(serializer, "instance", None) if serializer is not None else None
        if request.method not in SAFE_METHODS and instance is not None and hasattr(instance, "_meta"):
            audit.note(request, obj=instance)
        return super().finalize_response(request, response, *args, **kwargs)


class ModelPermissions(drf_permissions.DjangoModelPermissions):
    """Model-level rights for things that are not hosts or containers (users, groups, grants).

    Reading needs the view permission too. A view without a queryset names its model in
    `permission_model` (e.g. guardian's UserObjectPermission for /permissions/).
    """

    perms_map = {
        **drf_permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }

    def _queryset(self, view):
        model = getattr(view, "permission_model", None)
        if model is not None:
            return model.objects.none()
        return super()._queryset(view)

    def has_permission(self, request, view):
        if not is_signed_in(request.user):
            return False
        return super().has_permission(request, view)
