from __future__ import annotations

from django.db import transaction
from django.db.models import Count, F, Prefetch, Q
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from guardian.shortcuts import assign_perm
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from accounts.api.base import with_default_permissions
from containers import bus, container_settings, engine, engine_objects, extensions, host_rules, operations, services
from containers import stats as stats_service
from containers.api import logs as logs_api
from containers.api.base import VisibleViewSetMixin
from containers.api.pagination import KeysFirstPagination
from containers.api.serializers import (
    BulkJobDetailSerializer,
    BulkJobSerializer,
    BulkRequestSerializer,
    ContainerSerializer,
    DiskUsageSerializer,
    EventSerializer,
    HostSerializer,
    HostTestResultSerializer,
    KillOptionsSerializer,
    LimitSerializer,
    LogLineSerializer,
    LogsQuerySerializer,
    LogsSerializer,
    ProfileSamplesQuerySerializer,
    RemoveOptionsSerializer,
    RenameSerializer,
    StatsPointSerializer,
    StatsQuerySerializer,
    StatsSerializer,
    StopOptionsSerializer,
)
from containers.api.serializers_engine import (
    ContainerCreatedSerializer,
    ContainerCreateSerializer,
    DuplicateSerializer,
    InspectQuerySerializer,
)
from containers.choices import BulkItemStatus, EventCategory
from containers.filters import ContainerFilter, EventFilter, HostFilter
from containers.models import BulkJob, Container, DockerHost, Event, ProfileSession, Tag
from containers.permissions import HOST_ACTIONS, Visibility, has_container_perm, host_perm


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- bulk jobs -------------------------------------------------------------------------
def _progress(queryset):
    return queryset.select_related("user").annotate(
        done=Count("items", filter=~Q(items__status=BulkItemStatus.PENDING)),
        live_succeeded=Count("items", filter=Q(items__ok=True)),
        live_failed=Count("items", filter=Q(items__status=BulkItemStatus.FAILED)),
    )


def _with_items(job: BulkJob) -> BulkJob:
    job.item_list = list(job.items.order_by("position"))
    # Counts as of now, also while the job runs (the stored ones are written when it ends).
    job.succeeded, job.failed = job.live_succeeded, job.live_failed
    return job


def _job_with_progress(job_id) -> BulkJob:
    return _with_items(_progress(BulkJob.objects.filter(pk=job_id)).get())


class BulkJobViewSet(VisibleViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Bulk operations: one's own (an administrator sees everyone's), newest first."""

    permission_classes = []  # a job is its owner's: filter_permitted
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ["status", "action"]
    ordering = ["-created_at"]

    def get_queryset(self):
        # Counting items groups the query, which drops the model's default ordering.
        return _progress(BulkJob.objects.all()).order_by("-created_at", "pk")

    def filter_permitted(self, queryset):
        if self.request.user.is_superuser:
            return queryset
        return queryset.filter(user=self.request.user)

    def get_serializer_class(self):
        return BulkJobDetailSerializer if self.action == "retrieve" else BulkJobSerializer

    def get_object(self):
        return _with_items(super().get_object())


# Fields whose change means the engine must be contacted again.
_CONNECTION_FIELDS = ("url", "tls_ca", "tls_cert", "tls_key")


class HostViewSet(VisibleViewSetMixin, viewsets.ModelViewSet):
    serializer_class = HostSerializer
    filterset_class = HostFilter
    ordering_fields = ["name", "status", "last_seen_at", "created_at"]
    ordering = ["name"]

    def get_queryset(self):
        return DockerHost.objects.annotate(
            container_count=Count("containers", filter=Q(containers__removed_at__isnull=True))
        )

    def perform_create(self, serializer):
        host = serializer.save(created_by=self.request.user)
        for action_name in HOST_ACTIONS:
            assign_perm(host_perm(action_name), self.request.user, host)
        bus.emit("host.added", category=EventCategory.HOST, host=host, actor=self.request.user,
                 message=f"{self.request.user} added host {host.name} ({host.url})",
                 data={"host": str(host.pk), "name": host.name, "url": host.url})
        services.test_host(host)

    def update(self, request, *args, **kwargs):
        # Where a host connects is for administrators (model permission), never for a grant on
        # the host: checked before validation, so a grant holder learns nothing about other hosts.
        host = self.get_object()
        changing = host_rules.connection_changes(host, request.data)
        if changing and not host_rules.may_change_connection(request.user):
            raise PermissionDenied(host_rules.refusal(changing))
        return super().update(request, *args, **kwargs)

    def perform_update(self, serializer):
        before = {name: getattr(serializer.instance, name) for name in _CONNECTION_FIELDS}
        host = serializer.save()
        changed = sorted(k for k, v in before.items() if getattr(host, k) != v)
        bus.emit("host.changed", category=EventCategory.HOST, host=host, actor=self.request.user,
                 message=f"{self.request.user} changed host {host.name}",
                 data={"host": str(host.pk), "name": host.name, "fields": sorted(serializer.validated_data)})
        if changed:
            services.test_host(host)

    def perform_destroy(self, instance):
        name, pk = instance.name, str(instance.pk)
        instance.delete()
        bus.emit("host.removed", category=EventCategory.HOST, actor=self.request.user,
                 message=f"{self.request.user} removed host {name}", data={"host": pk, "name": name})

    @extend_schema(request=None, responses={200: HostTestResultSerializer})
    @action(detail=True, methods=["post"], required_action="view")
    def test(self, request, pk=None):
        """Connect to the engine now and report what it says (also updates the host's status)."""
        host = self.get_object()
        result = services.test_host(host)
        bus.emit("host.tested", category=EventCategory.HOST, host=host, actor=request.user, persist=True,
                 message=f"{request.user} tested {host.name}: {'ok' if result['ok'] else result['error']}",
                 data={"host": str(host.pk), "ok": result["ok"], "status": result["status"]})
        return Response(HostTestResultSerializer(result).data)

    @extend_schema(parameters=[StatsQuerySerializer], responses={200: StatsSerializer})
    @action(detail=True, methods=["get"])
    def stats(self, request, pk=None):
        """The host's containers summed (CPU, memory, network, block I/O) over a range."""
        host = self.get_object()
        query = _valid(StatsQuerySerializer, request.query_params)
        points = stats_service.host_series(host, query["range"])
        return Response({"range": query["range"], "points": StatsPointSerializer(points, many=True).data})

    @extend_schema(responses={200: inline_serializer("DiskUsageHistory", {"results": DiskUsageSerializer(many=True)})})
    @action(detail=True, methods=["get"], url_path="disk-usage")
    def disk_usage(self, request, pk=None):
        """`docker system df` history, newest first (the first item is the current state)."""
        host = self.get_object()
        limit = _valid(LimitSerializer, request.query_params)["limit"]
        rows = host.disk_usage.all()[:limit]
        return Response({"results": DiskUsageSerializer(rows, many=True).data})


class ContainerViewSet(VisibleViewSetMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = ContainerSerializer
    filterset_class = ContainerFilter
    lookup_field = "key"
    lookup_value_regex = r"[0-9a-fA-F-]{36}:[0-9a-f]{12}"
    ordering_fields = ["name", "state", "image", "created_at", "started_at", "host__name", "key"]
    # By name (then key, for a stable order across pages): served by the partial index.
    ordering = ["name", "key"]
    # The page's keys first, then only those rows (containers/api/pagination.py).
    pagination_class = KeysFirstPagination

    def get_queryset(self):
        if self.action == "list":
            # Narrowed, filtered, ordered and sliced as plain rows; page_rows() reads the page.
            return Container.objects.all()
        return self._with_details(Container.objects.select_related("host"))

    def page_rows(self, keys):
        """The full rows of one page of the list (containers/api/pagination.py); the list shows
        the host's name only, so there is no host object per row."""
        return self._with_details(Container.objects.filter(pk__in=keys).annotate(host_name=F("host__name")))

    def get_permissions(self):
        if self.action == "create":
            # Creating needs `deploy` on the host named in the body (checked in create()), not
            # the model-wide add permission ObjectPermissions asks for.
            return with_default_permissions([])
        return super().get_permissions()

    @extend_schema(request=ContainerCreateSerializer, responses={201: ContainerCreatedSerializer})
    def create(self, request):
        """Create a container (`deploy` on its host): the image is pulled when missing (progress
        as `image.pull`), the container created with the given settings and started unless
        `start` is false. 201 with its key."""
        from containers import container_create
        from containers.api.engine_objects import error_response, host_for

        data = _valid(ContainerCreateSerializer, request.data)
        host = host_for(request, data["host"], "deploy")  # engine-writing: guarded by `deploy`
        try:
            key = container_create.create_container(host, data, actor=request)
        except engine_objects.ObjectError as exc:
            return error_response(exc)
        return Response({"key": key}, status=201)

    @extend_schema(request=DuplicateSerializer, responses={201: ContainerCreatedSerializer})
    @action(detail=True, methods=["post"], required_action="deploy")
    def duplicate(self, request, key=None):
        """A copy of the container under another name (`deploy` on its host), with `changes` in
        the creation's shapes (env and labels: the keys given are set, null removes one)."""
        from containers import container_create
        from containers.api.engine_objects import error_response

        container = self.get_object()  # engine-writing: guarded by `deploy` (required_action)
        data = _valid(DuplicateSerializer, request.data)
        try:
            key = container_create.duplicate(container, data["name"], data["changes"], start=data["start"], actor=request)
        except engine_objects.ObjectError as exc:
            return error_response(exc)
        return Response({"key": key}, status=201)

    @staticmethod
    def _with_details(queryset):
        # update_available comes from the updates app's last check and stack from the stacks app
        # (both registered in containers/extensions.py), in the same query.
        # Tags land in a plain list: reading them through `obj.tags.all()` builds a related manager
        # and a queryset per row, which was a large part of a list request.
        tags = Prefetch("tags", queryset=Tag.objects.only("id", "name"), to_attr="tag_list")
        return extensions.annotate(queryset.prefetch_related(tags), "update_available", "stack").order_by()


    # --- operations -------------------------------------------------------------------
    def _operate(self, request, action_name: str, **options):
        container = self.get_object()
        try:
            container = operations.run(container, action_name, user=request.user, **options)
        except operations.OperationError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(ContainerSerializer(container).data)

    @extend_schema(request=None, responses={200: ContainerSerializer})
    @action(detail=True, methods=["post"], required_action="operate")
    def start(self, request, key=None):
        return self._operate(request, "start")

    @extend_schema(request=StopOptionsSerializer, responses={200: ContainerSerializer})
    @action(detail=True, methods=["post"], required_action="operate")
    def stop(self, request, key=None):
        options = _valid(StopOptionsSerializer, request.data or request.query_params)
        return self._operate(request, "stop", timeout=options.get("timeout"))

    @extend_schema(request=StopOptionsSerializer, responses={200: ContainerSerializer})
    @action(detail=True, methods=["post"], required_action="operate")
    def restart(self, request, key=None):
        options = _valid(StopOptionsSerializer, request.data or request.query_params)
        return self._operate(request, "restart", timeout=options.get("timeout"))

    @extend_schema(request=KillOptionsSerializer, responses={200: ContainerSerializer})
    @action(detail=True, methods=["post"], required_action="operate")
    def kill(self, request, key=None):
        options = _valid(KillOptionsSerializer, request.data or request.query_params)
        return self._operate(request, "kill", signal=options.get("signal"))

    @extend_schema(request=None, responses={200: ContainerSerializer})
    @action(detail=True, methods=["post"], required_action="operate")
    def pause(self, request, key=None):
        return self._operate(request, "pause")

    @extend_schema(request=None, responses={200: ContainerSerializer})
    @action(detail=True, methods=["post"], required_action="operate")
    def unpause(self, request, key=None):
        return self._operate(request, "unpause")

    @extend_schema(request=RenameSerializer, responses={200: ContainerSerializer})
    @action(detail=True, methods=["post"], required_action="operate")
    def rename(self, request, key=None):
        container = self.get_object()
        data = _valid(RenameSerializer, request.data)
        try:
            container = operations.rename(container, data["name"].lstrip("/"), user=request.user)
        except operations.OperationError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(ContainerSerializer(container).data)

    @extend_schema(parameters=[RemoveOptionsSerializer], responses={204: None})
    def destroy(self, request, *args, **kwargs):
        container = self.get_object()
        options = _valid(RemoveOptionsSerializer, request.query_params)
        try:
            operations.remove(container, user=request.user, force=options["force"], volumes=options["volumes"])
        except operations.OperationError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(status=204)

    @extend_schema(request=BulkRequestSerializer, responses={200: BulkJobDetailSerializer, 202: BulkJobDetailSerializer})
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """One action over many containers; each item reports its own outcome.

        Up to DOCKMON_BULK_INLINE_MAX containers (or `background: false`) run inside the request:
        200 with every result. Larger selections (or `background: true`) go to a worker: 202 with
        the job, its items pending; follow it at /api/v1/bulk-jobs/{id}/ or over the WebSocket
        (`bulk.item` per container, then `bulk.finished`)."""
        data = _valid(BulkRequestSerializer, request.data)
        job = operations.create_job(
            data["keys"], data["action"], user=request.user,
            options={"force": data["force"], "volumes": data["volumes"], "timeout": data.get("timeout")},
            background=data.get("background"),
        )
        job = _job_with_progress(job.pk)
        return Response(BulkJobDetailSerializer(job).data, status=202 if job.background else 200)

    # --- logs and stats -------------------------------------------------------------------
    @extend_schema(parameters=[LogsQuerySerializer], responses={200: LogsSerializer})
    @action(detail=True, methods=["get"], required_action="operate")
    def logs(self, request, key=None):
        """The last lines of stdout/stderr with timestamps; `download=true` returns them as a text file.

        JSON holds the newest lines that fit in DOCKMON_LOGS_MAX_BYTES of text (`truncated: true`
        when older ones were left out); a download streams up to DOCKMON_LOGS_DOWNLOAD_MAX_BYTES
        and then ends with a line saying it was cut."""
        container = self.get_object()
        query = _valid(LogsQuerySerializer, request.query_params)
        if container.removed_at is not None:
            return Response({"detail": f"{container.name} was removed; its logs went with it."}, status=404)
        # Read as a stream under a byte cap (containers/api/logs.py); guarded by `operate` above.
        try:
            client = engine.client_for_host(container.host, timeout=30)
            try:
                reader = logs_api.open_reader(client, container, query)
            except BaseException:
                client.close()
                raise
        except engine.ContainerGone:
            services.mark_removed(container)
            return Response({"detail": f"{container.name} no longer exists on the engine."}, status=404)
        except engine.EngineError as exc:
            return Response({"detail": f"Host {container.host.name}: {exc}"}, status=503 if exc.unreachable else 409)
        if query["download"]:
            chunks = logs_api.download_chunks(reader, logs_api.download_cap(), on_close=client.close)
            return logs_api.streaming_response(request, chunks, filename=f"{container.name}.log")
        try:
            lines, truncated = logs_api.newest_lines(reader, logs_api.json_cap())
        except engine.EngineError as exc:
            return Response({"detail": f"Host {container.host.name}: {exc}"}, status=503 if exc.unreachable else 409)
        finally:
            reader.close()
            client.close()
        return Response({"lines": LogLineSerializer([line.__dict__ for line in lines], many=True).data, "truncated": truncated})

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["get", "patch"], url_path="settings", required_action="view")
    def container_settings(self, request, key=None):
        """What people set on a container (tags, desired state, and the fields other apps add)."""
        container = self.get_object()
        if request.method == "GET":
            return Response(container_settings.read(container))
        serializer = container_settings.serializer_class()(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        fields = container_settings.registered()
        denied = [name for name in serializer.validated_data if not has_container_perm(request.user, fields[name].permission, container)]
        if denied:
            return Response({"detail": f"You may not change {', '.join(sorted(denied))} of this container."}, status=403)
        with transaction.atomic():
            for name, value in serializer.validated_data.items():
                fields[name].set(container, value, request.user)
        bus.emit("container.settings", category=EventCategory.USER, host=container.host_id, container=container, actor=request.user,
                 message=f"{request.user} changed {', '.join(sorted(serializer.validated_data))} of {container.name}",
                 data={"key": container.key, "fields": sorted(serializer.validated_data)})
        return Response(container_settings.read(container))

    @extend_schema(parameters=[InspectQuerySerializer], responses={200: dict})
    @action(detail=True, methods=["get"])
    def inspect(self, request, key=None):
        """The engine's inspect document (`view`). Environment values are masked; a user with
        `change` on the container may ask for them with `reveal_env=true` (audited)."""
        container = self.get_object()
        reveal = _valid(InspectQuerySerializer, request.query_params)["reveal_env"]
        if reveal and not has_container_perm(request.user, "change", container):
            raise PermissionDenied(f"You may not read the environment values of {container.name}.")
        try:
            return Response(engine_objects.container_inspect(container, reveal_env=reveal, actor=request))
        except engine_objects.ObjectError as exc:
            return Response({"detail": str(exc)}, status=exc.status)

    @extend_schema(parameters=[StatsQuerySerializer], responses={200: StatsSerializer})
    @action(detail=True, methods=["get"])
    def stats(self, request, key=None):
        container = self.get_object()
        query = _valid(StatsQuerySerializer, request.query_params)
        points = stats_service.container_series(container, query["range"])
        return Response({"range": query["range"], "points": StatsPointSerializer(points, many=True).data})


class EventViewSet(VisibleViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = EventSerializer
    filterset_class = EventFilter
    ordering_fields = ["ts", "id"]
    ordering = ["-ts", "-id"]

    def get_queryset(self):
        return Event.objects.select_related("actor")

    def filter_permitted(self, queryset):
        return Visibility.for_user(self.request.user).filter_rows(queryset)


PROFILE_COLUMNS = ["t", "cpu_percent", "mem_bytes", "mem_limit", "net_rx", "net_tx", "blk_read", "blk_write", "pids"]


def _in_time_order(session) -> list[list]:
    # Rows are appended as they are saved; sort anyway (ISO 8601 UTC strings sort as times) so a
    # replay never steps back, whatever order the saves came in.
    return sorted(session.samples, key=lambda row: row[0] or "")


class ProfileSessionViewSet(VisibleViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                            viewsets.GenericViewSet):
    """Saved live-profiler sessions of containers the user may view; export as CSV or JSON."""

    permission_classes = []  # viewing by filter_permitted; deleting by perform_destroy
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ["container_key", "host"]
    ordering = ["-started_at"]

    def get_queryset(self):
        return ProfileSession.objects.select_related("user")

    def filter_permitted(self, queryset):
        return Visibility.for_user(self.request.user).filter_rows(queryset)

    def get_serializer_class(self):
        from containers.api.serializers import ProfileSessionDetailSerializer, ProfileSessionSerializer

        return ProfileSessionDetailSerializer if self.action == "retrieve" else ProfileSessionSerializer

    def perform_destroy(self, instance):
        if not (self.request.user.is_superuser or instance.user_id == self.request.user.pk):
            from rest_framework.exceptions import PermissionDenied

            raise PermissionDenied("Only the person who recorded a profile (or an administrator) may delete it.")
        instance.delete()

    @extend_schema(parameters=[ProfileSamplesQuerySerializer], responses={200: dict})
    @action(detail=True, methods=["get"])
    def samples(self, request, pk=None):
        """The session's samples in time order, for replay: each with `elapsed` seconds since the
        first one. A session still recording grows; fetch again from `next_offset` for the rest."""
        from datetime import datetime

        session = self.get_object()
        query = _valid(ProfileSamplesQuerySerializer, request.query_params)
        rows = _in_time_order(session)
        offset, limit = query["offset"], query["limit"]
        page = rows[offset:offset + limit]
        first = datetime.fromisoformat(rows[0][0].replace("Z", "+00:00")) if rows and rows[0][0] else None
        samples = []
        for row in page:
            sample = dict(zip(PROFILE_COLUMNS, row, strict=False))
            at = datetime.fromisoformat(row[0].replace("Z", "+00:00")) if row[0] else None
            sample["elapsed"] = round((at - first).total_seconds(), 3) if at and first else None
            samples.append(sample)
        return Response({
            "session": session.pk, "container": session.container_key, "name": session.container_name,
            "started_at": session.started_at, "ended_at": session.ended_at, "end_reason": session.end_reason,
            "open": session.is_open, "count": len(rows), "offset": offset,
            "next_offset": offset + len(page), "columns": PROFILE_COLUMNS, "samples": samples,
        })

    @extend_schema(
        # Not "format": DRF reserves that query parameter for picking a renderer.
        parameters=[OpenApiParameter("as", str, enum=["csv", "json"], description="Export format (default json)")],
        responses={(200, "text/csv"): str, (200, "application/json"): dict},
    )
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        session = self.get_object()
        fmt = request.query_params.get("as", "json")
        if fmt not in ("csv", "json"):
            raise serializers.ValidationError({"as": ["Choose csv or json."]})
        columns = PROFILE_COLUMNS
        rows = _in_time_order(session)
        stem = f"profile-{session.container_name or session.pk}-{session.started_at:%Y%m%dT%H%M%SZ}"
        if fmt == "csv":
            import csv
            import io

            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(columns)
            writer.writerows(rows)
            response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{stem}.csv"'
            return response
        body = {
            "session": session.pk, "container": session.container_key, "name": session.container_name,
            "started_at": session.started_at, "ended_at": session.ended_at,
            "samples": [dict(zip(columns, row, strict=False)) for row in rows],
        }
        response = Response(body)
        response["Content-Disposition"] = f'attachment; filename="{stem}.json"'
        return response
