from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response

from accounts.roles import is_administrator
from containers.api.base import VisibleViewSetMixin
from containers.models import Container
from containers.permissions import ObjectPermissions, has_container_perm, object_allowed, visible_containers
from healthchecks import restarts, services
from healthchecks.api.serializers import (
    AutoRestartConfigSerializer,
    CheckResultSerializer,
    HealthCheckSerializer,
    RestartAttemptSerializer,
    ResultHistorySerializer,
    TestResultSerializer,
)
from healthchecks.filters import AutoRestartFilter, HealthCheckFilter
from healthchecks.models import AutoRestartConfig, CheckResult, HealthCheck, RestartAttempt
from healthchecks.probe import public_error

RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# More results than this in a range are averaged into buckets (a chart has only so many pixels).
MAX_POINTS = 1000


class HealthCheckPermissions(ObjectPermissions):
    """Creating a check needs `change` on its container, which the serializer's container
    decides (perform_create), not a model permission; "test" needs `operate` on the container."""

    def has_permission(self, request, view):
        if getattr(view, "action", None) == "create":
            user = request.user
            return bool(user and user.is_authenticated and user.is_active)
        return super().has_permission(request, view)

    def has_object_permission(self, request, view, obj):
        if getattr(view, "action", None) == "test":
            return has_container_perm(request.user, "operate", obj.container) or object_allowed(request.user, "change", obj)
        return super().has_object_permission(request, view, obj)


class HealthCheckViewSet(VisibleViewSetMixin, viewsets.ModelViewSet):
    """HTTP health checks of containers; each row also shows the container's own Docker
    HEALTHCHECK status as `container_health`."""

    queryset = HealthCheck.objects.select_related("container", "container__host")
    serializer_class = HealthCheckSerializer
    filterset_class = HealthCheckFilter
    ordering_fields = ["id", "status", "last_checked_at", "container__name"]
    permission_classes = [HealthCheckPermissions]

    def perform_create(self, serializer):
        container = serializer.validated_data["container"]
        if not has_container_perm(self.request.user, "change", container):
            raise PermissionDenied("You may not change this container's settings.")
        serializer.save(created_by=self.request.user, next_due_at=timezone.now())

    def perform_update(self, serializer):
        # New settings take effect at the next dispatch, not after the old interval.
        serializer.save(next_due_at=timezone.now())

    @extend_schema(request=None, responses=TestResultSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Run the check now (recorded like a scheduled run) and return the result.

        Administrators get every detail; anyone else pass/fail, the status code, the response
        time and the kind of failure - never what the server said (a check is not a way to read
        a response body)."""
        # Sends the check's request on the caller's behalf: needs `operate` (or `change`) on its
        # container (HealthCheckPermissions), and the outbound policy decides where it may go.
        check = self.get_object()
        try:
            check, result = services.test_now(check)
        except services.CheckBusy as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        check = self.get_queryset().get(pk=check.pk)
        payload = {**result.as_dict(), "check": HealthCheckSerializer(check, context=self.get_serializer_context()).data}
        if not is_administrator(request.user):
            payload.update(error=public_error(result.error), url=check.url)
        return Response(payload)

    @extend_schema(
        parameters=[OpenApiParameter("range", str, enum=list(RANGES), description="default 24h")],
        responses=ResultHistorySerializer,
    )
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        """History for the response-time chart: `{range, summary, points: [{ts, status,
        response_ms, status_code, error}]}`; more than 1000 results are averaged into buckets
        (`{ts, response_ms (mean), failures, count}`)."""
        check = self.get_object()
        key = request.query_params.get("range", "24h")
        if key not in RANGES:
            raise ValidationError({"range": f"Use one of {', '.join(RANGES)}."})
        since = timezone.now() - RANGES[key]
        rows = CheckResult.objects.filter(health_check=check, ts__gte=since).order_by("ts")
        count = rows.count()
        failures = rows.filter(status="failure").count()
        times = [ms for ms in rows.exclude(response_ms=None).values_list("response_ms", flat=True)]
        summary = {
            "count": count,
            "failures": failures,
            "uptime_percent": round(100.0 * (count - failures) / count, 2) if count else None,
            "avg_response_ms": round(sum(times) / len(times), 1) if times else None,
            "max_response_ms": max(times) if times else None,
        }
        if count <= MAX_POINTS:
            points = CheckResultSerializer(rows, many=True, context={"admin": is_administrator(request.user)}).data
            bucketed = False
        else:
            points = _buckets(rows, since, RANGES[key])
            bucketed = True
        return Response({"check": check.pk, "range": key, "bucketed": bucketed, "summary": summary, "points": points})


def _buckets(rows, since, span):
    width = span / (MAX_POINTS // 2)
    buckets: dict[int, list] = {}
    for ts, result_status, ms in rows.values_list("ts", "status", "response_ms").iterator(chunk_size=5000):
        index = int((ts - since) / width)
        bucket = buckets.setdefault(index, [0, 0, 0, 0])  # count, failures, ms sum, ms count
        bucket[0] += 1
        bucket[1] += result_status == "failure"
        if ms is not None:
            bucket[2] += ms
            bucket[3] += 1
    return [
        {"ts": (since + width * index).isoformat().replace("+00:00", "Z"), "count": b[0], "failures": b[1],
         "response_ms": round(b[2] / b[3], 1) if b[3] else None}
        for index, b in sorted(buckets.items())
    ]


class AutoRestartViewSet(VisibleViewSetMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Auto-restart settings per container, keyed by container key; GET of a container without
    settings shows the defaults with `configured: false`; PUT/PATCH creates or changes them
    (needs `change` on the container)."""

    queryset = AutoRestartConfig.objects.select_related("container", "container__host")
    serializer_class = AutoRestartConfigSerializer
    filterset_class = AutoRestartFilter
    lookup_field = "key"
    lookup_value_regex = "[^/]+"  # malformed keys: 404 after authentication (AuditedViewMixin)
    permission_classes = []  # rights on the container, checked by _container()
    filter_backends = [DjangoFilterBackend]

    def _container(self, action: str) -> Container:
        key = self.kwargs["key"]
        container = visible_containers(self.request.user).select_related("host").filter(pk=key).first()
        if container is None:
            raise NotFound("No such container.")
        if action != "view" and not has_container_perm(self.request.user, action, container):
            raise PermissionDenied("You may not change this container's settings.")
        from accounts import audit

        if action != "view":
            audit.note(self.request, obj=container)
        return container

    def get_object(self) -> AutoRestartConfig:
        # `key` is the container's, not a field of the settings row: DRF's own lookup (used by
        # OPTIONS to describe the PUT form) would query a field that does not exist.
        return self._config(self._container("view"))

    def _config(self, container: Container) -> AutoRestartConfig:
        config = AutoRestartConfig.objects.filter(container=container).first()
        return config or AutoRestartConfig(container=container)

    def retrieve(self, request, key=None):
        config = self._config(self._container("view"))
        return Response(self.get_serializer(config).data)

    def update(self, request, key=None, partial=False):
        container = self._container("change")
        config = self._config(container)
        serializer = self.get_serializer(config, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        created = config.pk is None
        serializer.save(container=container)
        return Response(serializer.data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def partial_update(self, request, key=None):
        return self.update(request, key, partial=True)

    def destroy(self, request, key=None):
        container = self._container("change")
        AutoRestartConfig.objects.filter(container=container).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=AutoRestartConfigSerializer)
    @action(detail=True, methods=["post"])
    def reset(self, request, key=None):
        """Forget the failures and the restart-loop guard; cancel a pending restart."""
        container = self._container("change")
        config = AutoRestartConfig.objects.filter(container=container).first()
        if config is None:
            raise NotFound("This container has no auto-restart settings.")
        return Response(self.get_serializer(restarts.reset(config)).data)

    @extend_schema(responses=RestartAttemptSerializer(many=True))
    @action(detail=True, methods=["get"])
    def attempts(self, request, key=None):
        """Every restart attempt of the container, newest first (paginated)."""
        container = self._container("view")
        page = self.paginate_queryset(RestartAttempt.objects.filter(container=container))
        return self.get_paginated_response(RestartAttemptSerializer(page, many=True).data)
