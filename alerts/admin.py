from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from alerts import evaluator, notify
from alerts.choices import AlertState
from alerts.models import (
    Alert,
    AlertHistory,
    AlertRule,
    ConditionState,
    DeliveryAttempt,
    MaintenanceWindow,
    Notification,
    NotificationChannel,
    SubjectState,
)
from containers.admin_base import ObjectPermissionAdmin, VisibleHostFilter, holds_somewhere, visible_choices
from containers.permissions import filter_related


def _visible_channels(user):
    from alerts.api.views import visible_channels

    return visible_channels(user)


VisibleChannelFilter = visible_choices(_visible_channels)


def _may_change_channel(user, channel) -> bool:
    return user.has_perm("alerts.change_notificationchannel") or user.has_perm("alerts.change_notificationchannel", channel)


def _changes_some_channel(user) -> bool:
    """The model permission, or `change` granted on at least one channel."""
    from guardian.shortcuts import get_objects_for_user

    return user.is_superuser or user.has_perm("alerts.change_notificationchannel") or get_objects_for_user(
        user, "alerts.change_notificationchannel", klass=NotificationChannel, accept_global_perms=False).exists()


class NotificationChannelAdminForm(forms.ModelForm):
    """The API's rule on where a channel sends (alerts/destinations.py): choosing a destination
    (base URL, SMTP host, apprise URL...) is for administrators; the model's clean() applies the
    outbound policy to it. Stored secrets are never shown here; the model drops them when the
    destination moves."""

    request_user = None  # set per request by NotificationChannelAdmin.get_form

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "config", "enabled"]

    def clean(self):
        from alerts import destinations
        from alerts.transports import TRANSPORTS, transport_class

        cleaned = super().clean()
        kind = cleaned.get("kind") or self.instance.kind
        config = cleaned.get("config")
        if kind not in TRANSPORTS or "config" not in cleaned:
            return cleaned
        if not isinstance(config, dict):
            self.add_error("config", "Enter the settings as a JSON object.")
            return cleaned
        if destinations.is_administrator(self.request_user):
            return cleaned  # the outbound policy on the destination is the model's clean()
        same_kind = bool(self.instance.pk) and self.instance.kind == kind
        merged = {**config, **(self.instance.secret_dict if same_kind else {})}
        previous = self.instance.destination() if same_kind else None
        errors = destinations.config_errors(transport_class(kind), merged, user=self.request_user, previous=previous)
        for name, message in sorted(errors.items()):
            self.add_error("config", f"{name}: {message}")
        return cleaned


@admin.register(NotificationChannel)
class NotificationChannelAdmin(ObjectPermissionAdmin):
    form = NotificationChannelAdminForm
    list_display = ["name", "kind", "enabled", "disabled_reason", "last_sent_at", "last_error"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name"]
    # Secrets are set through the API or UI; the admin never shows them.
    exclude = ["secrets"]
    readonly_fields = ["disabled_reason", "last_error", "last_sent_at", "created_by", "created_at", "updated_at"]
    actions = ["send_test", "enable"]

    def visible_queryset(self, request):
        from alerts.api.views import visible_channels

        return visible_channels(request.user)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request_user": request.user})

    def get_queryset(self, request):
        from alerts.api.views import visible_channels

        return visible_channels(request.user, super().get_queryset(request))

    def has_change_some_permission(self, request):
        # The actions check each selected channel again.
        return _changes_some_channel(request.user)

    def _changeable(self, request, queryset) -> list[NotificationChannel]:
        allowed = []
        for channel in queryset:
            if _may_change_channel(request.user, channel):
                allowed.append(channel)
            else:
                self.message_user(request, f"{channel.name}: you may view this channel but not change it.", messages.ERROR)
        return allowed

    # Sends a message through the channel on the user's behalf: `change` on the channel, as
    # POST /api/v1/notification-channels/{id}/test/.
    @admin.action(description="Send a test notification", permissions=["change_some"])
    def send_test(self, request, queryset):
        for channel in self._changeable(request, queryset):
            result = notify.send_test(channel, request.user)
            level = messages.SUCCESS if result["ok"] else messages.ERROR
            self.message_user(request, f"{channel.name}: {'sent' if result['ok'] else result['error']}", level)

    @admin.action(description="Enable (clears the reason it was disabled)", permissions=["change_some"])
    def enable(self, request, queryset):
        ids = [channel.pk for channel in self._changeable(request, queryset)]
        count = NotificationChannel.objects.filter(pk__in=ids).update(enabled=True, disabled_reason="")
        self.message_user(request, f"{count} channel(s) enabled.")


@admin.register(AlertRule)
class AlertRuleAdmin(ObjectPermissionAdmin):
    list_display = ["name", "kind", "scope", "severity", "threshold", "duration_seconds", "cooldown_seconds", "enabled"]
    list_filter = ["kind", "scope", "severity", "enabled"]
    search_fields = ["name", "name_regex"]
    filter_horizontal = ["hosts", "tags", "channels"]
    raw_id_fields = ["containers"]
    readonly_fields = ["created_by", "created_at", "updated_at"]

    def visible_queryset(self, request):
        from alerts.api.views import visible_rules

        return visible_rules(request.user)

    def get_queryset(self, request):
        from alerts.api.views import visible_rules

        return visible_rules(request.user, super().get_queryset(request))

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        # A rule notifies through channels the user may see (hosts and containers are narrowed
        # by ObjectPermissionAdmin).
        if db_field.name == "channels" and not request.user.is_superuser:
            kwargs["queryset"] = _visible_channels(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        from alerts import regexguard

        if obj.name_regex:
            try:
                regexguard.validate(obj.name_regex)
            except ValueError as exc:
                self.message_user(request, f"name regex refused: {exc}; it matches nothing", messages.WARNING)
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class AlertHistoryInline(admin.TabularInline):
    model = AlertHistory
    extra = 0
    readonly_fields = ["ts", "action", "user", "text"]
    can_delete = False


class NotificationInline(admin.TabularInline):
    model = Notification
    extra = 0
    fields = ["channel", "event", "status", "attempts", "last_error", "sent_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(Alert)
class AlertAdmin(ObjectPermissionAdmin):
    list_display = ["id", "title", "kind", "state", "severity", "subject_name", "occurrences", "first_seen_at", "last_seen_at"]
    list_filter = ["state", "kind", "severity", ("host", VisibleHostFilter)]
    search_fields = ["title", "message", "subject_name", "dedup_key", "container__key"]
    list_select_related = ["rule"]
    readonly_fields = [f.name for f in Alert._meta.fields]
    inlines = [AlertHistoryInline, NotificationInline]
    actions = ["acknowledge", "resolve"]

    def visible_queryset(self, request):
        return filter_related(request.user, Alert.objects.all())

    def get_queryset(self, request):
        return filter_related(request.user, super().get_queryset(request))

    def has_add_permission(self, request):
        return False

    def has_change_some_permission(self, request):
        # The model permission (a role), or `change` on some host or container, which covers its
        # alerts; each selected alert is checked again.
        return request.user.has_perm("alerts.change_alert") or holds_somewhere(request.user, "change")

    @admin.action(description="Acknowledge", permissions=["change_some"])
    def acknowledge(self, request, queryset):
        from containers.permissions import object_allowed

        done = sum(evaluator.acknowledge(a, request.user) for a in queryset if object_allowed(request.user, "change", a))
        self.message_user(request, f"{done} alert(s) acknowledged.")

    @admin.action(description="Resolve", permissions=["change_some"])
    def resolve(self, request, queryset):
        from containers.permissions import object_allowed

        done = sum(evaluator.resolve_by_user(a, request.user) for a in queryset.exclude(state=AlertState.RESOLVED)
                   if object_allowed(request.user, "change", a))
        self.message_user(request, f"{done} alert(s) resolved.")


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(ObjectPermissionAdmin):
    list_display = ["name", "recurrence", "host", "container", "starts_at", "ends_at", "start_time", "duration_minutes", "timezone",
                    "enabled"]
    list_filter = ["recurrence", "enabled", ("host", VisibleHostFilter)]
    search_fields = ["name"]
    raw_id_fields = ["container"]

    def visible_queryset(self, request):
        return self.get_queryset(request)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        related = filter_related(request.user, queryset)
        if request.user.is_superuser or request.user.has_perm("alerts.view_maintenancewindow"):
            return (related | queryset.filter(host__isnull=True, container__isnull=True)).distinct()
        return related


class DeliveryInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    readonly_fields = ["ts", "ok", "status_code", "error", "duration_ms"]
    can_delete = False


# ---------------------------------------------------------------------------
# Rows that belong to an alert, a rule or a container: the same visibility as the API
# ---------------------------------------------------------------------------
def visible_alerts(user):
    return filter_related(user, Alert.objects.all())


def visible_notifications(user, queryset=None):
    """Notifications of alerts the user sees (the API's /alerts/{id}/notifications/ rule), and
    test messages of channels the user sees."""
    from django.db.models import Q

    from alerts.api.views import visible_channels

    queryset = Notification.objects.all() if queryset is None else queryset
    if user.is_superuser:
        return queryset
    return queryset.filter(Q(alert__in=visible_alerts(user).values("pk"))
                           | Q(alert__isnull=True, channel__in=visible_channels(user).values("pk")))


class VisibleRowsAdmin(ObjectPermissionAdmin):
    """Read-only rows narrowed by `visible(user, queryset)`; a row is viewable exactly when it is
    in that queryset (a staff user granted one host sees that host's rows and no others)."""

    def visible(self, user, queryset):  # pragma: no cover - each admin says how
        raise NotImplementedError

    def visible_queryset(self, request):
        return self.visible(request.user, self.model.objects.all())

    def get_queryset(self, request):
        return self.visible(request.user, super().get_queryset(request))

    def _row_visible(self, request, obj) -> bool:
        return self.visible(request.user, self.model.objects.filter(pk=obj.pk)).exists()

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return super().has_view_permission(request)
        return self._row_visible(request, obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Housekeeping rows: superusers only (retention tasks prune them).
        return request.user.is_superuser and (obj is None or self._row_visible(request, obj))


@admin.register(Notification)
class NotificationAdmin(VisibleRowsAdmin):
    list_display = ["id", "alert", "channel", "event", "status", "attempts", "next_attempt_at", "sent_at", "last_error"]
    list_filter = ["status", "event", ("channel", VisibleChannelFilter)]
    search_fields = ["title", "body", "last_error"]
    list_select_related = ["channel", "alert"]
    readonly_fields = [f.name for f in Notification._meta.fields]
    inlines = [DeliveryInline]
    actions = ["retry_now"]

    def visible(self, user, queryset):
        return visible_notifications(user, queryset)

    def _may_retry(self, request, note) -> bool:
        from containers.permissions import object_allowed

        if request.user.is_superuser:
            return True
        if note.alert is not None:
            return object_allowed(request.user, "change", note.alert)
        return request.user.has_perm("alerts.change_notificationchannel") or request.user.has_perm(
            "alerts.change_notificationchannel", note.channel)

    def has_retry_permission(self, request):
        user = request.user
        return (user.is_superuser or user.has_perm("alerts.change_alert") or holds_somewhere(user, "change")
                or _changes_some_channel(user))

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request, queryset):
        from django.utils import timezone

        ids = [n.pk for n in queryset.select_related("alert", "channel") if self._may_retry(request, n)]
        count = Notification.objects.filter(pk__in=ids, status__in=["failed", "pending"]).update(
            status="pending", next_attempt_at=timezone.now())
        notify.dispatch_due()
        self.message_user(request, f"{count} notification(s) queued.")


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(VisibleRowsAdmin):
    list_display = ["ts", "notification", "channel_name", "ok", "status_code", "duration_ms", "error"]
    list_filter = ["ok", "status_code", ("notification__channel", VisibleChannelFilter)]
    search_fields = ["error", "notification__title", "notification__channel__name"]
    list_select_related = ["notification", "notification__channel"]
    readonly_fields = [f.name for f in DeliveryAttempt._meta.fields]
    date_hierarchy = "ts"

    def visible(self, user, queryset):
        return queryset.filter(notification__in=visible_notifications(user).values("pk"))

    @admin.display(description="channel", ordering="notification__channel__name")
    def channel_name(self, obj):
        return obj.notification.channel.name


@admin.register(ConditionState)
class ConditionStateAdmin(VisibleRowsAdmin):
    list_display = ["rule", "subject", "first_breach_at", "last_value", "last_event_id", "last_sample_at", "updated_at"]
    list_filter = ["rule__kind"]
    search_fields = ["subject"]
    list_select_related = ["rule"]
    readonly_fields = [f.name for f in ConditionState._meta.fields]

    def visible(self, user, queryset):
        from django.db.models import Q, Value
        from django.db.models.functions import Concat

        from alerts.api.views import visible_rules
        from containers.permissions import visible_containers, visible_hosts

        if user.is_superuser:
            return queryset
        subjects = visible_containers(user).annotate(subject=Concat(Value("container:"), "key")).values("subject")
        return queryset.filter(rule__in=visible_rules(user).values("pk")).filter(
            Q(subject__in=subjects) | Q(subject__startswith="host:", host__in=visible_hosts(user).values("pk")))


@admin.register(SubjectState)
class SubjectStateAdmin(VisibleRowsAdmin):
    list_display = ["container_key", "suppressed_until", "reason"]
    search_fields = ["container_key", "reason"]
    list_filter = [("suppressed_until", admin.EmptyFieldListFilter)]

    def visible(self, user, queryset):
        from containers.permissions import visible_containers

        if user.is_superuser:
            return queryset
        return queryset.filter(container_key__in=visible_containers(user).values("key"))


@admin.register(AlertHistory)
class AlertHistoryAdmin(VisibleRowsAdmin):
    list_display = ["alert", "ts", "action", "user", "text"]
    list_filter = ["action"]
    search_fields = ["text", "alert__title"]
    list_select_related = ["alert", "user"]
    readonly_fields = ["alert", "ts", "action", "user", "text"]

    def visible(self, user, queryset):
        return queryset.filter(alert__in=visible_alerts(user).values("pk"))
