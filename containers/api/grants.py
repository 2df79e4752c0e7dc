"""/api/v1/permissions/: object permissions on hosts and containers (containers/grants.py)."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from guardian.models import UserObjectPermission
from rest_framework import exceptions, status, viewsets
from rest_framework.response import Response

from accounts import audit
from accounts.api.base import ModelPermissions
from containers import grants
from containers.api.base import VisibleViewSetMixin
from containers.api.serializers import GrantSerializer
from dockmon_site.api import DB_INT_MAX, Pagination

_GRANT_FILTERS = [
    OpenApiParameter("user", OpenApiTypes.INT, description="Grants of this user"),
    OpenApiParameter("group", OpenApiTypes.INT, description="Grants of this group"),
    OpenApiParameter("host", OpenApiTypes.UUID, description="Grants on this host and on its containers"),
    OpenApiParameter("container", OpenApiTypes.STR, description="Grants on this container"),
    OpenApiParameter("permission", OpenApiTypes.STR, enum=["view", "operate", "update", "change", "delete", "deploy"]),
]


class GrantViewSet(VisibleViewSetMixin, viewsets.ViewSet):
    """Object permissions on hosts and containers, for users and groups (administrators only).

    A right on a host covers all its containers, present and future. Granting operate,
    update or change also grants view.
    """

    # Administrators only: a model permission on guardian's table, not a rule per object (a plain
    # ViewSet has no queryset for filter_permitted to narrow).
    permission_classes = [ModelPermissions]
    permission_model = UserObjectPermission
    filter_backends = []  # its own query parameters (list), documented below
    serializer_class = GrantSerializer
    pagination_class = Pagination  # the list is paged like every other (and documented so)
    lookup_value_regex = "[ug][0-9]+"
    lookup_field = "id"

    def get_serializer(self, *args, **kwargs):
        # A plain ViewSet has none; OPTIONS (DRF's metadata) and the audit mixin ask for one.
        return GrantSerializer(*args, **kwargs)

    def _int_param(self, name: str) -> int | None:
        value = self.request.query_params.get(name)
        if value in (None, ""):
            return None
        if not value.isdigit() or int(value) > DB_INT_MAX:
            raise exceptions.ValidationError({name: ["Enter a whole number."]})
        return int(value)

    @extend_schema(parameters=_GRANT_FILTERS, responses=GrantSerializer(many=True))
    def list(self, request):
        host = request.query_params.get("host") or None
        if host is not None:
            try:
                host = str(uuid.UUID(host))
            except ValueError:
                raise exceptions.ValidationError({"host": ["Enter a valid UUID."]}) from None
        permission = request.query_params.get("permission") or None
        if permission is not None and permission not in ("view", "operate", "update", "change", "delete"):
            raise exceptions.ValidationError({"permission": [f"{permission!r} is not a valid choice."]})
        rows = grants.list_grants(
            user=self._int_param("user"), group=self._int_param("group"), host=host,
            container=request.query_params.get("container") or None, permission=permission,
        )
        paginator = self.paginator
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(GrantSerializer(page, many=True).data)

    @property
    def paginator(self):
        if not hasattr(self, "_paginator"):
            self._paginator = self.pagination_class()
        return self._paginator

    @extend_schema(responses={200: GrantSerializer, 404: OpenApiResponse(description="No such grant")})
    def retrieve(self, request, id=None):
        grant = grants.get_grant(id)
        if grant is None:
            raise exceptions.NotFound()
        return Response(GrantSerializer(grant).data)

    @extend_schema(request=GrantSerializer, responses={201: GrantSerializer, 200: GrantSerializer})
    def create(self, request):
        serializer = GrantSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        grant, created = grants.grant(data["principal"], data["permission"], data["target"])
        audit.record(
            request, "permission.grant", obj=data["target"],
            changes={"grant": grant.id, "permission": grant.permission, "user": grant.username or None, "group": grant.group_name or None},
        )
        return Response(GrantSerializer(grant).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(responses={204: None, 404: OpenApiResponse(description="No such grant")})
    def destroy(self, request, id=None):
        grant = grants.revoke(id)
        if grant is None:
            raise exceptions.NotFound()
        audit.record(
            request, "permission.revoke", object_type="containers.dockerhost" if grant.host_id else "containers.container",
            object_id=grant.host_id or grant.container_key, object_repr=grant.object_repr,
            changes={"grant": grant.id, "permission": grant.permission, "user": grant.username or None, "group": grant.group_name or None},
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
