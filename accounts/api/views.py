from __future__ import annotations

import csv
import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count
from django.http import HttpResponse
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from guardian.models import UserObjectPermission
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from accounts import audit, grants, lockout
from accounts.api.renderers import CSVRenderer
from accounts.api.serializers import (
    APITokenSerializer,
    AuditEntrySerializer,
    GrantSerializer,
    GroupSerializer,
    TokenObtainSerializer,
    UserSerializer,
)
from accounts.authentication import TokenWritePermission
from accounts.filters import AuditFilter, TokenFilter, UserFilter
from accounts.models import APIToken, AuditEntry
from accounts.roles import role_names
from containers import bus
from containers.choices import EventCategory
from dockmon_site.api import DB_INT_MAX, AuditedViewMixin, Pagination
from dockmon_site.permissions import ModelPermissions

User = get_user_model()


class TokenObtainView(APIView):
    """Exchange a username and password for a new API token (shown once)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(
        request=TokenObtainSerializer,
        responses={
            201: APITokenSerializer,
            400: OpenApiResponse(description="Bad credentials or invalid input"),
            429: OpenApiResponse(description="Too many attempts, or the username/address is locked out after failed logins"),
        },
        auth=[],
    )
    def post(self, request):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        wait = lockout.retry_after(username if isinstance(username, str) else None, request._request)
        if wait:
            # Same answer as the rate throttle, so a client backs off either way.
            raise exceptions.Throttled(wait=wait, detail="Too many failed logins; try again later.")
        serializer = TokenObtainSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token = serializer.save()
        audit.record(request, "token.obtain", obj=token, changes={"name": token.name, "read_only": token.read_only})
        bus.emit(
            "token.created",
            category=EventCategory.USER,
            actor=token.user,
            message=f"{token.user} obtained API token {token.name!r}",
            data={"token_id": token.pk, "name": token.name, "read_only": token.read_only},
        )
        return Response(APITokenSerializer(token).data, status=status.HTTP_201_CREATED)


@extend_schema_view(destroy=extend_schema(description="Revoke the token (it stops working at once; the row is kept for the record)."))
class APITokenViewSet(
    AuditedViewMixin, mixins.ListModelMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's own API tokens. POST shows the new token once; DELETE revokes."""

    serializer_class = APITokenSerializer
    permission_classes = [IsAuthenticated, TokenWritePermission]
    filter_backends = [DjangoFilterBackend]
    filterset_class = TokenFilter

    queryset = APIToken.objects.none()  # for the schema; get_queryset narrows to the caller's tokens

    def get_queryset(self):
        return APIToken.objects.filter(user=self.request.user)

    def perform_destroy(self, instance):
        if instance.revoked_at is None:
            instance.revoked_at = timezone.now()
            instance.save(update_fields=["revoked_at"])


# ---------------------------------------------------------------------------
# Administration: users, groups, grants
# ---------------------------------------------------------------------------
class UserViewSet(AuditedViewMixin, viewsets.ModelViewSet):
    """Users (administrators only). `password` is write-only and checked by the password validators."""

    serializer_class = UserSerializer
    permission_classes = [IsAuthenticated, TokenWritePermission, ModelPermissions]
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = UserFilter
    ordering_fields = ["username", "date_joined", "last_login"]
    ordering = ["username"]
    queryset = User.objects.prefetch_related("groups")

    def perform_destroy(self, instance):
        if instance.pk == self.request.user.pk:
            raise exceptions.ValidationError({"detail": "You cannot delete your own account."})
        if instance.is_superuser and not self.request.user.is_superuser:
            raise exceptions.PermissionDenied("Only a superuser may delete a superuser.")
        instance.delete()

    def perform_create(self, serializer):
        self._staff_only_by_superusers(serializer, False)
        serializer.save()

    def perform_update(self, serializer):
        instance = serializer.instance
        if instance.is_superuser and not self.request.user.is_superuser:
            # Their password, groups, activity: a non-superuser administrator touches none of it.
            raise exceptions.PermissionDenied("Only a superuser may change a superuser.")
        self._staff_only_by_superusers(serializer, instance.is_staff)
        serializer.save()

    def _staff_only_by_superusers(self, serializer, current: bool) -> None:
        # Staff opens the Django admin; only a superuser gives it or takes it away.
        wanted = serializer.validated_data.get("is_staff", current)
        if wanted != current and not self.request.user.is_superuser:
            raise exceptions.PermissionDenied("Only a superuser may make someone staff or take it away.")


class GroupViewSet(AuditedViewMixin, viewsets.ModelViewSet):
    """Groups, including the built-in roles (which cannot be renamed or deleted)."""

    serializer_class = GroupSerializer
    permission_classes = [IsAuthenticated, TokenWritePermission, ModelPermissions]
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_fields = ["name"]
    ordering = ["name"]
    queryset = Group.objects.annotate(n_users=Count("user", distinct=True)).prefetch_related("permissions__content_type")

    def perform_destroy(self, instance):
        if instance.name in role_names():
            raise exceptions.ValidationError({"detail": "The built-in roles cannot be deleted."})
        instance.delete()


_GRANT_FILTERS = [
    OpenApiParameter("user", OpenApiTypes.INT, description="Grants of this user"),
    OpenApiParameter("group", OpenApiTypes.INT, description="Grants of this group"),
    OpenApiParameter("host", OpenApiTypes.UUID, description="Grants on this host and on its containers"),
    OpenApiParameter("container", OpenApiTypes.STR, description="Grants on this container"),
    OpenApiParameter("permission", OpenApiTypes.STR, enum=["view", "operate", "update", "change", "delete"]),
]


class GrantViewSet(AuditedViewMixin, viewsets.ViewSet):
    """Object permissions on hosts and containers, for users and groups (administrators only).

    A right on a host covers all its containers, present and future. Granting operate,
    update or change also grants view.
    """

    permission_classes = [IsAuthenticated, TokenWritePermission, ModelPermissions]
    permission_model = UserObjectPermission
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
                import uuid

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


# ---------------------------------------------------------------------------
# Audit log
# ---------------------------------------------------------------------------
CSV_COLUMNS = ["ts", "username", "user", "token_id", "ip", "source", "method", "path", "action", "object_type", "object_id",
               "object_repr", "status_code", "changes"]


class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log. Administrators see every entry; everyone else sees their own.

    `?format=csv` (or `/audit/export/`) downloads the filtered entries as CSV.
    """

    serializer_class = AuditEntrySerializer
    permission_classes = [IsAuthenticated]
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = AuditFilter
    ordering_fields = ["ts", "action", "username", "status_code"]
    ordering = ["-ts", "-id"]
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]
    queryset = AuditEntry.objects.none()  # for the schema

    def get_queryset(self):
        queryset = AuditEntry.objects.all()
        if not self.request.user.has_perm("accounts.view_auditentry"):
            queryset = queryset.filter(user=self.request.user)
        return queryset

    def list(self, request, *args, **kwargs):
        if getattr(request.accepted_renderer, "format", None) == "csv":
            return self._csv(request)
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR}, filters=True)
    @action(detail=False, methods=["get"], renderer_classes=[CSVRenderer, JSONRenderer])
    def export(self, request):
        """The filtered entries as CSV (at most DOCKMON_AUDIT_EXPORT_MAX_ROWS, newest first)."""
        return self._csv(request)

    def _csv(self, request):
        # Built whole rather than streamed: under ASGI a streamed body is iterated outside the
        # request's thread, away from its database connection. The row cap bounds the size.
        limit = getattr(settings, "DOCKMON_AUDIT_EXPORT_MAX_ROWS", 100_000)
        queryset = self.filter_queryset(self.get_queryset())[:limit]
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="dockmon-audit-{timezone.now():%Y%m%d-%H%M%S}.csv"'
        write_csv(response, queryset)
        return response


def write_csv(out, entries) -> None:
    """Audit entries as CSV rows (with a header) into a file-like `out`."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in entries.iterator(chunk_size=1000):
        values = []
        for column in CSV_COLUMNS:
            value = getattr(entry, "user_id" if column == "user" else column)
            if column == "ts":
                value = value.isoformat().replace("+00:00", "Z")
            elif column == "changes":
                value = json.dumps(value, sort_keys=True, default=str)
            values.append(_csv_safe("" if value is None else str(value)))
        writer.writerow(values)


def _csv_safe(value: str) -> str:
    # A cell starting with =, +, - or @ is run as a formula by spreadsheet programs; paths,
    # object names and usernames come from users, so neutralise them.
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value
