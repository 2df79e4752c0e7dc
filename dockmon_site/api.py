"""Base pieces shared by every app's API."""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DatabaseError):
        # The database went away (restart, network): say so instead of a bare 500 page.
        logger.exception("database error while serving %s", context.get("view"))
        return Response({"detail": "The database is unavailable; try again shortly."}, status=503)
    return None



class PermissionedViewSetMixin:
    """Every owned-object viewset: one permission class and one queryset filter (see permissions.py)."""

    # An @action may name the right it needs ("operate", "update"...); methods decide otherwise.
    required_action: str | None = None

    def get_permissions(self):
        from accounts.authentication import TokenWritePermission
        from dockmon_site.permissions import ObjectPermissions

        return [IsAuthenticated(), TokenWritePermission(), ObjectPermissions()]

    @property
    def filter_backends(self):
        from dockmon_site.permissions import PermittedObjectsFilter

        return [PermittedObjectsFilter, DjangoFilterBackend, OrderingFilter]
