from __future__ import annotations

from django.db.models import Count, Q
from drf_spectacular.utils import extend_schema
from guardian.shortcuts import assign_perm
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from containers import services
from containers.api.serializers import ContainerSerializer, EventSerializer, HostSerializer, HostTestResultSerializer
from containers.choices import EventCategory
from containers.filters import ContainerFilter, EventFilter, HostFilter
from containers.models import Container, DockerHost, Event
from dockmon_site import bus
from dockmon_site.api import PermissionedViewSetMixin
from dockmon_site.permissions import HOST_ACTIONS, Visibility, host_perm

# Fields whose change means the engine must be contacted again.
_CONNECTION_FIELDS = ("url", "tls_ca", "tls_cert", "tls_key")


class HostViewSet(PermissionedViewSetMixin, viewsets.ModelViewSet):
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


class ContainerViewSet(PermissionedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = ContainerSerializer
    filterset_class = ContainerFilter
    lookup_field = "key"
    lookup_value_regex = r"[0-9a-fA-F-]{36}:[0-9a-f]{12}"
    ordering_fields = ["name", "state", "image", "created_at", "started_at", "host__name"]
    ordering = ["host__name", "name"]

    def get_queryset(self):
        return Container.objects.select_related("host").prefetch_related("tags")


class EventViewSet(PermissionedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = EventSerializer
    filterset_class = EventFilter
    ordering_fields = ["ts", "id"]
    ordering = ["-ts", "-id"]

    def get_queryset(self):
        return Event.objects.select_related("actor")

    def filter_permitted(self, queryset):
        visibility = Visibility.for_user(self.request.user)
        if visibility.everything:
            return queryset if visibility.staff or self.request.user.is_superuser else queryset.exclude(host__isnull=True, container_key="")
        return queryset.filter(Q(host_id__in=visibility.host_ids) | Q(container_key__in=visibility.container_keys))
