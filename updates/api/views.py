from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.db.models import Q
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from kombu.exceptions import OperationalError
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from containers.api.base import VisibleViewSetMixin
from containers.models import Container
from containers.permissions import has_container_perm, visible_containers, visible_hosts
from updates import runqueue
from updates.api.serializers import (
    BulkResultSerializer,
    BulkUpdateSerializer,
    CheckAcceptedSerializer,
    CheckRequestSerializer,
    ContainerUpdateSerializer,
    ExplanationSerializer,
    PolicyCategorySerializer,
    RegistryCredentialSerializer,
    UpdatePolicySerializer,
    UpdateRequestSerializer,
    UpdateRunSerializer,
)
from updates.choices import RunTrigger
from updates.filters import ContainerUpdateFilter, UpdateRunFilter
from updates.models import ContainerUpdate, PolicyCategory, RegistryCredential, UpdatePolicy
from updates.policies import decide, decide_many
from updates.tasks import check_updates

logger = logging.getLogger(__name__)


class ContainerScopedPermission(permissions.BasePermission):
    """Rows that belong to one container carry that container's rights (containers.permissions):
    reading needs `view`; changing tracking settings or a policy needs `change`."""

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_active)

    def has_object_permission(self, request, view, obj):
        action = "view" if request.method in permissions.SAFE_METHODS else (getattr(view, "required_action", None) or "change")
        return has_container_perm(request.user, action, obj.container)


class ContainerScopedViewSetMixin(VisibleViewSetMixin):
    permission_classes = [ContainerScopedPermission]

    def filter_permitted(self, queryset):
        # Objects of containers the user cannot view do not exist for them (404, not 403).
        return queryset.filter(container__in=visible_containers(self.request.user).values("pk"))


class ContainerUpdateViewSet(ContainerScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                             mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """What the last update check found per container; PATCH sets how a container is tracked."""

    serializer_class = ContainerUpdateSerializer
    filterset_class = ContainerUpdateFilter
    lookup_field = "container"
    lookup_url_kwarg = "key"
    lookup_value_regex = r"[0-9a-fA-F-]{36}:[0-9a-f]{12}"
    ordering_fields = ["container__name", "status", "checked_at", "update_available"]
    http_method_names = ["get", "patch", "post", "head", "options"]

    def get_queryset(self):
        return ContainerUpdate.objects.filter(container__removed_at__isnull=True).select_related("container", "container__host")

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        items = list(page if page is not None else queryset)
        # Policies of the whole page in two queries rather than two per row.
        context = {**self.get_serializer_context(), "decisions": decide_many([row.container for row in items])}
        data = ContainerUpdateSerializer(items, many=True, context=context).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    @extend_schema(request=CheckRequestSerializer, responses={202: CheckAcceptedSerializer})
    @action(detail=False, methods=["post"])
    def check(self, request):
        """Start an update check of the given containers and/or hosts (nothing given: everything you can see)."""
        serializer = CheckRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        keys = serializer.validated_data.get("containers") or []
        hosts = serializer.validated_data.get("hosts") or []
        user = request.user
        everything = user.is_superuser or user.has_perm("containers.view_container") or user.has_perm("containers.view_dockerhost")
        container_keys, host_ids = None, None
        if keys or hosts:
            if keys and hosts:
                on_hosts = Container.objects.present().filter(host_id__in=hosts).values_list("pk", flat=True)
                container_keys = sorted(set(keys) | set(on_hosts))
            elif keys:
                container_keys = keys
            else:
                host_ids = hosts
        elif not everything:
            container_keys = list(visible_containers(user, queryset=Container.objects.present()).values_list("pk", flat=True))
        count_qs = Container.objects.present().filter(host__enabled=True)
        if container_keys is not None:
            count_qs = count_qs.filter(pk__in=container_keys)
        if host_ids is not None:
            count_qs = count_qs.filter(host_id__in=host_ids)
        check_id = uuid.uuid4().hex
        try:
            # A manual check goes where the updates app's work goes (DOCKMON_UPDATE_QUEUE, when set).
            options = {"queue": settings.DOCKMON_UPDATE_QUEUE} if settings.DOCKMON_UPDATE_QUEUE else {}
            check_updates.apply_async(kwargs={"container_keys": container_keys, "host_ids": host_ids,
                                              "force": serializer.validated_data["force"], "check_id": check_id}, **options)
        except OperationalError:
            logger.exception("could not queue an update check")
            return Response({"detail": "The task queue (Redis) is unavailable; try again shortly."}, status=503)
        return Response({"check": check_id, "containers": count_qs.count()}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: ExplanationSerializer})
    @action(detail=True, methods=["get"])
    def explain(self, request, key=None):
        """Which policy rule decides for this container, and why."""
        return Response(explain_container(request, key))


def explain_container(request, key: str) -> dict:
    container = get_object_or_404(visible_containers(request.user), pk=key)
    decision = decide(container)
    return {
        "container": container.key,
        "name": container.name,
        "policy": decision.policy,
        "rule": decision.rule,
        "reason": decision.reason,
        "details": decision.details,
        "steps": decision.steps,
        "auto_update": decision.allows_auto_update,
        "manual_update": decision.allows_manual_update(force=False),
        "manual_update_with_force": decision.allows_manual_update(force=True),
    }


class ContainerUpdatePolicyView(APIView):
    """GET /api/v1/containers/{key}/update-policy/: the same explanation, reached from the container."""

    @extend_schema(responses={200: ExplanationSerializer})
    def get(self, request, key):
        return Response(explain_container(request, key))


class UpdatePolicyViewSet(ContainerScopedViewSetMixin, viewsets.ModelViewSet):
    """Per-container update policies (rule 2 of the priority order)."""

    serializer_class = UpdatePolicySerializer
    filterset_fields = ["policy"]
    ordering_fields = ["container__name", "policy", "updated_at"]

    def get_queryset(self):
        return UpdatePolicy.objects.select_related("container", "created_by")

    def perform_create(self, serializer):
        container = Container.objects.get(pk=serializer.validated_data["container_id"])
        if not has_container_perm(self.request.user, "change", container):
            raise PermissionDenied("You may not change this container's settings.")
        serializer.save(created_by=self.request.user)


class CategoryPermission(permissions.BasePermission):
    """Categories apply to everyone's containers: anyone signed in reads them, model rights change them."""

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        verb = {"POST": "add", "DELETE": "delete"}.get(request.method, "change")
        return user.has_perm(f"updates.{verb}_policycategory")


class PolicyCategoryViewSet(VisibleViewSetMixin, viewsets.ModelViewSet):
    serializer_class = PolicyCategorySerializer
    queryset = PolicyCategory.objects.all()
    filterset_fields = ["enabled", "policy", "builtin"]
    permission_classes = [CategoryPermission]
    filter_backends = [DjangoFilterBackend]

    def filter_permitted(self, queryset):
        return queryset  # categories apply to everyone's containers: everyone signed in sees them

    def perform_destroy(self, instance):
        if instance.builtin:
            raise PermissionDenied("Built-in categories cannot be deleted; disable them instead.")
        instance.delete()


class RegistryCredentialViewSet(VisibleViewSetMixin, viewsets.ModelViewSet):
    """Credentials per registry host; the password is write-only and stored encrypted."""

    serializer_class = RegistryCredentialSerializer
    filterset_fields = ["registry"]
    ordering_fields = ["registry"]

    def get_queryset(self):
        return RegistryCredential.objects.all()

    def filter_permitted(self, queryset):
        user = self.request.user
        if user.is_superuser or user.has_perm("updates.view_registrycredential"):
            return queryset
        return queryset.none()



# ---------------------------------------------------------------------------
# Update runs
# ---------------------------------------------------------------------------
def runs_visible_to(user, queryset=None):
    """Runs of hosts the user sees, or of a container key (old or new) the user sees: a grant
    on one container follows it across updates, and so does its history."""
    from updates.models import UpdateRun

    queryset = UpdateRun.objects.all() if queryset is None else queryset
    if user.is_superuser:
        return queryset
    keys = visible_containers(user).values("key")
    return queryset.filter(Q(host__in=visible_hosts(user).values("pk")) | Q(old_key__in=keys) | Q(new_key__in=keys))


class UpdateRunViewSet(VisibleViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Update runs: what was updated, every stage, the log, and how it ended."""

    serializer_class = UpdateRunSerializer
    filterset_class = UpdateRunFilter
    ordering_fields = ["created_at", "finished_at", "status"]
    permission_classes = []  # viewing by filter_permitted; updating by the executor's own checks

    def get_queryset(self):
        from updates.models import UpdateRun

        return UpdateRun.objects.select_related("requested_by")

    def filter_permitted(self, queryset):
        from updates.history import runs_of

        key = self.request.query_params.get("container") if self.action == "list" else None
        if key:
            # One container's history: the same runs its page shows, across its re-creations.
            return runs_of(self.request.user, key, queryset)
        return runs_visible_to(self.request.user, queryset)

    @extend_schema(request=BulkUpdateSerializer, responses={202: BulkResultSerializer})
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """Update a selection: one run per container, at most DOCKMON_UPDATE_CONCURRENCY_PER_HOST
        at a time on any host; refused containers are listed with why."""
        serializer = BulkUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        keys = list(dict.fromkeys(data["containers"]))
        found = {c.pk: c for c in visible_containers(request.user, queryset=Container.objects.select_related("host").filter(pk__in=keys))}
        batch = uuid.uuid4().hex[:12]
        runs, refused, hosts = [], [], set()
        for key in keys:
            container = found.get(key)
            if container is None:
                refused.append({"key": key, "status": 404, "error": "Not found."})
                continue
            try:
                run = runqueue.request_update(container, user=request.user, force=data["force"], trigger=RunTrigger.BULK,
                                              batch=batch, health_timeout=data.get("health_timeout"), enqueue=False)
            except runqueue.RunRefused as exc:
                refused.append({"key": key, "status": exc.status, "error": str(exc)})
                continue
            runs.append(run)
            hosts.add(container.host_id)
        for host_id in hosts:
            runqueue.kick(host_id)
        for run in runs:
            run.refresh_from_db()
        return Response({"batch": batch, "runs": UpdateRunSerializer(runs, many=True).data, "refused": refused},
                        status=status.HTTP_202_ACCEPTED if runs else status.HTTP_400_BAD_REQUEST)


class ContainerUpdateRunView(APIView):
    """POST /api/v1/containers/{key}/update/ {force?, health_timeout?} → 202 {run, ...}."""

    @extend_schema(request=UpdateRequestSerializer, responses={202: UpdateRunSerializer})
    def post(self, request, key):
        container = get_object_or_404(visible_containers(request.user, queryset=Container.objects.select_related("host")), pk=key)
        serializer = UpdateRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = runqueue.request_update(container, user=request.user, force=serializer.validated_data["force"],
                                          trigger=RunTrigger.MANUAL, health_timeout=serializer.validated_data.get("health_timeout"))
        except runqueue.RunRefused as exc:
            body = {"detail": str(exc)}
            if exc.run is not None and runs_visible_to(request.user).filter(pk=exc.run.pk).exists():
                body["run"] = exc.run.pk
            return Response(body, status=exc.status)
        run.refresh_from_db()
        return Response(UpdateRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
