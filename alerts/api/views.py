from __future__ import annotations

from django.db.models import Count, Q
from drf_spectacular.utils import extend_schema
from guardian.shortcuts import get_objects_for_user
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from alerts import evaluator, notify
from alerts.api.serializers import (
    AlertHistorySerializer,
    AlertRuleSerializer,
    AlertSerializer,
    ChannelTestResultSerializer,
    MaintenanceWindowSerializer,
    NoteSerializer,
    NotificationChannelSerializer,
    NotificationSerializer,
    SnoozeSerializer,
)
from alerts.choices import AlertState, HistoryAction
from alerts.filters import AlertFilter, AlertRuleFilter
from alerts.models import Alert, AlertHistory, AlertRule, MaintenanceWindow, NotificationChannel
from containers.api.base import VisibleViewSetMixin
from containers.models import Container, DockerHost
from containers.permissions import filter_related, visible_containers, visible_hosts


def _active(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def visible_channels(user, queryset=None):
    """Channels a user may see: by the model permission (e.g. a role) or one granted on the channel."""
    queryset = NotificationChannel.objects.all() if queryset is None else queryset
    if not _active(user):
        return queryset.none()
    if user.is_superuser:
        return queryset
    # guardian's filter drops the model ordering; paginated lists need a stable one.
    return get_objects_for_user(user, "alerts.view_notificationchannel", klass=queryset, accept_global_perms=True).order_by("name", "id")


def visible_rules(user, queryset=None):
    """Rules a user may see: by permission, and only those whose hosts and containers they can all see
    (a rule must not reveal a host or container name to someone who cannot view it)."""
    queryset = AlertRule.objects.all() if queryset is None else queryset
    if not _active(user):
        return queryset.none()
    if user.is_superuser:
        return queryset
    queryset = get_objects_for_user(user, "alerts.view_alertrule", klass=queryset, accept_global_perms=True)
    hidden_hosts = DockerHost.objects.exclude(pk__in=visible_hosts(user).values("pk")).values("pk")
    hidden_containers = Container.objects.exclude(key__in=visible_containers(user).values("key")).values("key")
    return queryset.exclude(hosts__in=hidden_hosts).exclude(containers__in=hidden_containers).order_by("name", "id")


class _Audited:
    """Channel bodies hold secrets under names the audit log cannot know: note a redacted copy,
    before validation, so that a refused request (400) is recorded without them too."""

    def _audit_changes(self):
        from accounts import audit
        from alerts.transports import secret_settings

        body = dict(self.request.data) if hasattr(self.request.data, "items") else {}
        config = body.get("config")
        if isinstance(config, dict):
            body["config"] = {k: _masked(v) if k in secret_settings() else v for k, v in config.items()}
        elif "config" in body:
            body["config"] = "********"  # not an object: the serializer refuses it; its text may still be a secret
        audit.note(self.request, changes=body)

    def create(self, request, *args, **kwargs):
        self._audit_changes()
        return super().create(request, *args, **kwargs)

    def update(self, request, *args, **kwargs):
        self._audit_changes()
        return super().update(request, *args, **kwargs)


def _masked(value):
    # Header names stay readable (they say what was set); every value is hidden.
    if isinstance(value, dict):
        return {str(k): "********" for k in value}
    return "********" if value not in ("", None) else value


class NotificationChannelViewSet(_Audited, VisibleViewSetMixin, viewsets.ModelViewSet):
    """Notification channels; their secret settings are write-only. POST /{id}/test/ sends a test
    message now (needs change on the channel)."""

    queryset = NotificationChannel.objects.all()
    serializer_class = NotificationChannelSerializer
    filterset_fields = ["kind", "enabled"]
    ordering_fields = ["name", "id", "kind"]

    def filter_permitted(self, queryset):
        return visible_channels(self.request.user, queryset)

    @extend_schema(request=None, responses=ChannelTestResultSerializer)
    @action(detail=True, methods=["post"], required_action="change")
    def test(self, request, pk=None):
        # Sends through the channel on the user's behalf: `change` on the channel (required_action).
        from alerts.destinations import is_administrator

        channel = self.get_object()
        result = notify.send_test(channel, request.user)
        if not result["ok"] and result["status_code"] is not None and not is_administrator(request.user):
            # Others learn pass/fail and the status, not what the service answered.
            result["error"] = f"{channel.kind}: the service answered with status {result['status_code']}" + (
                " (the channel's settings look wrong)" if result["permanent"] else "")
        return Response(result)


class AlertRuleViewSet(VisibleViewSetMixin, viewsets.ModelViewSet):
    """Alert rules. Creating and changing one needs the model permission (the Operators role has
    it); its hosts, containers and channels must be ones you can see."""

    queryset = AlertRule.objects.prefetch_related("hosts", "containers", "tags", "channels")
    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilter
    ordering_fields = ["name", "id", "kind", "severity"]

    def filter_permitted(self, queryset):
        # A rule of scope "all" may be read by people who see only some of its alerts: count
        # those only (the count must not tell them about alerts of hosts they cannot see).
        user = self.request.user
        is_open = ~Q(alerts__state=AlertState.RESOLVED)
        if not user.is_superuser:
            is_open &= Q(alerts__pk__in=filter_related(user, Alert.objects.all()).values("pk"))
        return visible_rules(user, queryset).annotate(n_open=Count("alerts", filter=is_open)).order_by("name", "id")


class AlertViewSet(VisibleViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Alerts (open ones first in the UI; history is the resolved ones). `?state=open` lists
    everything not resolved. Acknowledge, snooze, resolve and notes need change on the alert
    (the Operators role, or change on its host/container)."""

    queryset = Alert.objects.select_related("rule", "acknowledged_by", "resolved_by")
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    ordering_fields = ["last_seen_at", "first_seen_at", "severity", "id", "occurrences"]

    def filter_permitted(self, queryset):
        return filter_related(self.request.user, queryset)

    def _done(self, alert, ok: bool, verb: str):
        alert.refresh_from_db()
        if not ok:
            return Response({"detail": f"This alert cannot be {verb} in its state ({alert.state})."}, status=status.HTTP_409_CONFLICT)
        return Response(AlertSerializer(alert, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"], required_action="change")
    def acknowledge(self, request, pk=None):
        alert = self.get_object()
        return self._done(alert, evaluator.acknowledge(alert, request.user), "acknowledged")

    @extend_schema(request=SnoozeSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"], required_action="change")
    def snooze(self, request, pk=None):
        alert = self.get_object()
        body = SnoozeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._done(alert, evaluator.snooze(alert, request.user, body.validated_data["until"]), "snoozed")

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"], required_action="change")
    def resolve(self, request, pk=None):
        alert = self.get_object()
        return self._done(alert, evaluator.resolve_by_user(alert, request.user), "resolved")

    @extend_schema(responses=AlertHistorySerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)  # the whole list (the schema says so)
    def history(self, request, pk=None):
        """What happened to the alert, with people's notes (action "note")."""
        alert = self.get_object()
        return Response(AlertHistorySerializer(alert.history.select_related("user"), many=True).data)

    @extend_schema(request=NoteSerializer, responses=AlertHistorySerializer)
    @action(detail=True, methods=["post"], required_action="change")
    def notes(self, request, pk=None):
        """Annotate the alert."""
        alert = self.get_object()
        body = NoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        entry = AlertHistory.objects.create(alert=alert, action=HistoryAction.NOTE, user=request.user, text=body.validated_data["text"])
        return Response(AlertHistorySerializer(entry).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=NotificationSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def notifications(self, request, pk=None):
        """The delivery log: every notification of the alert with its attempts."""
        alert = self.get_object()
        rows = alert.notifications.select_related("channel").prefetch_related("deliveries").order_by("created_at", "id")
        return Response(NotificationSerializer(rows, many=True).data)


class MaintenanceWindowViewSet(VisibleViewSetMixin, viewsets.ModelViewSet):
    """Blackout windows: alerts are recorded but not sent while one covers them, and the ones
    still open are sent once after it ends. Global when they name no host or container."""

    queryset = MaintenanceWindow.objects.select_related("host", "container")
    serializer_class = MaintenanceWindowSerializer
    filterset_fields = ["host", "enabled", "recurrence"]

    def filter_permitted(self, queryset):
        user = self.request.user
        related = filter_related(user, queryset)
        if user.is_superuser or user.has_perm("alerts.view_maintenancewindow"):
            return (related | queryset.filter(host__isnull=True, container__isnull=True)).distinct()
        return related
