"""The stacks API. Who may do what (containers/permissions.py rules, on the stack's host):

- list and read a stack or a run: `view` on the host (what one may not view is 404);
- create, edit, deploy, start, stop, restart, down and delete: `deploy` on the host (never
  implied by `change`: creating containers is root on that host); viewable without it is 403.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from kombu.exceptions import OperationalError
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.response import Response

from accounts import audit
from accounts.roles import is_signed_in
from containers.api.base import VisibleViewSetMixin
from containers.permissions import has_host_perm, object_allowed, visible_hosts
from stacks import compose, external, runs, services
from stacks.api.serializers import (
    DiffRowSerializer,
    DownSerializer,
    StackRunSerializer,
    StackSerializer,
)
from stacks.choices import RunKind, RunStatus, StackSource
from stacks.models import Stack, StackRun
from stacks.tasks import execute_run

logger = logging.getLogger(__name__)


class ComposeUnavailable(APIException):
    status_code = 503
    default_detail = compose.INSTALL_HINT
    default_code = "compose_missing"


class RunConflict(APIException):
    status_code = 409
    default_detail = "The stack already has a run in progress."
    default_code = "run_in_progress"


class StackPermissions(permissions.BasePermission):
    """Reading follows the host's `view`; anything else needs `deploy` on the host."""

    def has_permission(self, request, view):
        return is_signed_in(request.user)

    def has_object_permission(self, request, view, obj):
        host = obj.host
        if request.method in permissions.SAFE_METHODS:
            return object_allowed(request.user, "view", host)
        return has_host_perm(request.user, "deploy", host)


class StackViewSet(VisibleViewSetMixin, viewsets.ModelViewSet):
    """Compose stacks DockMon manages, per host (`?host=`)."""

    serializer_class = StackSerializer
    permission_classes = [StackPermissions]
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_fields = ["host", "source"]
    ordering_fields = ["name", "created_at", "deployed_at"]
    ordering = ["name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return Stack.objects.select_related("host")

    def handle_exception(self, exc):
        if isinstance(exc, compose.ComposeMissing):
            exc = ComposeUnavailable(str(exc))
        return super().handle_exception(exc)

    def perform_create(self, serializer):
        # Guarded by `deploy` on the host (StackSerializer.validate_host); compose only checks the text.
        serializer.save(created_by=self.request.user)

    def list(self, request, *args, **kwargs):
        # Projects recorded before their containers' events reached the stacks app show too.
        external.sync_hosts(visible_hosts(request.user).values_list("pk", flat=True))
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        stacks = list(page if page is not None else queryset)
        services.attach_standings(stacks)
        data = self.get_serializer(stacks, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def _start(self, request, stack: Stack, kind: str, *, options: dict | None = None, diff: list | None = None):
        """A run of `kind`, queued for a worker; the caller holds `deploy` on the stack's host."""
        if (stack.source == StackSource.EXTERNAL) != (kind == RunKind.ADOPT):
            raise ValidationError({"detail": "This stack runs outside DockMon: adopt it first." if kind != RunKind.ADOPT
                                   else "DockMon manages this stack already."})
        compose.binary()  # ComposeMissing (503) now rather than a run that can only fail
        try:
            run = runs.create_run(stack, kind, request.user, options=options, diff=diff)
        except runs.RunBusy as exc:
            raise RunConflict(str(exc)) from None
        audit.record(request, f"stack.{kind}", obj=stack,
                     changes={"run": run.pk, "host": str(stack.host_id), "options": options or {}, "diff": diff or []})
        try:
            queue = {"queue": settings.DOCKMON_STACK_QUEUE} if settings.DOCKMON_STACK_QUEUE else {}
            execute_run.apply_async(args=[run.pk], **queue)
        except OperationalError:
            logger.exception("could not queue stack run %s", run.pk)
            StackRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, error="The task queue was unavailable.")
            return Response({"detail": "The task queue (Redis) is unavailable; try again shortly."}, status=503)
        run.refresh_from_db()
        return Response(StackRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: StackRunSerializer})
    def destroy(self, request, *args, **kwargs):
        """Down (containers and networks; volumes are kept) and forget the stack; its files go to the trash."""
        # Guarded by `deploy` on the host (StackPermissions, through get_object).
        return self._start(request, self.get_object(), RunKind.DELETE)

    @extend_schema(request=None, responses={202: StackRunSerializer})
    @action(detail=True, methods=["post"])
    def deploy(self, request, pk=None):
        """Validate, pull, then `up -d --remove-orphans`: compose recreates only what changed."""
        # Guarded by `deploy` on the host (StackPermissions, through get_object). Audited with the diff.
        stack = self.get_object()
        return self._start(request, stack, RunKind.DEPLOY, diff=services.changes_only(services.diff(stack)))

    @extend_schema(request=None, responses={202: StackRunSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        # Guarded by `deploy` on the host (StackPermissions, through get_object).
        return self._start(request, self.get_object(), RunKind.START)

    @extend_schema(request=None, responses={202: StackRunSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        # Guarded by `deploy` on the host (StackPermissions, through get_object).
        return self._start(request, self.get_object(), RunKind.STOP)

    @extend_schema(request=None, responses={202: StackRunSerializer})
    @action(detail=True, methods=["post"])
    def restart(self, request, pk=None):
        # Guarded by `deploy` on the host (StackPermissions, through get_object).
        return self._start(request, self.get_object(), RunKind.RESTART)

    @extend_schema(request=DownSerializer, responses={202: StackRunSerializer})
    @action(detail=True, methods=["post"])
    def down(self, request, pk=None):
        """Remove the stack's containers and networks (and its named volumes with `volumes`)."""
        # Guarded by `deploy` on the host (StackPermissions, through get_object).
        stack = self.get_object()
        options = DownSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        return self._start(request, stack, RunKind.DOWN, options={"volumes": options.validated_data["volumes"]})

    @extend_schema(request=None, responses={202: StackRunSerializer})
    @action(detail=True, methods=["post"], url_path="update", url_name="update-images")
    def update_images(self, request, pk=None):
        """Pull new images and recreate the services whose image changed, one at a time behind a
        health gate; if one fails, every changed service goes back to the image it ran before."""
        # Guarded by `deploy` on the host (StackPermissions, through get_object).
        return self._start(request, self.get_object(), RunKind.UPDATE)

    @extend_schema(request=None, responses={202: StackRunSerializer})
    @action(detail=True, methods=["post"])
    def adopt(self, request, pk=None):
        """Manage a project started outside DockMon: its compose file (where its labels say) becomes the stack's text."""
        # Guarded by `deploy` on the host (StackPermissions, through get_object).
        return self._start(request, self.get_object(), RunKind.ADOPT)

    @extend_schema(responses={200: DiffRowSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None)
    def diff(self, request, pk=None):
        """What a deploy of the current file would change, per service (nothing runs)."""
        return Response(DiffRowSerializer(services.diff(self.get_object()), many=True).data)


class StackRunViewSet(VisibleViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs of compose on stacks (status, stage, log), visible with their host."""

    serializer_class = StackRunSerializer
    permission_classes = [StackPermissions]
    filterset_fields = ["host", "stack", "status", "kind"]
    ordering_fields = ["created_at", "finished_at"]
    ordering = ["-created_at"]

    def get_queryset(self):
        return StackRun.objects.select_related("host", "actor")
