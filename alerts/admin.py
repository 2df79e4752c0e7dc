from __future__ import annotations

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
from dockmon_site.admin_mixins import ObjectPermissionAdmin
from dockmon_site.permissions import filter_related


@admin.register(NotificationChannel)
class NotificationChannelAdmin(ObjectPermissionAdmin):
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

    def get_queryset(self, request):
        from alerts.api.views import visible_channels

        return visible_channels(request.user, super().get_queryset(request))

    @admin.action(description="Send a test notification")
    def send_test(self, request, queryset):
        for channel in queryset:
            result = notify.send_test(channel, request.user)
            level = messages.SUCCESS if result["ok"] else messages.ERROR
            self.message_user(request, f"{channel.name}: {'sent' if result['ok'] else result['error']}", level)

    @admin.action(description="Enable (clears the reason it was disabled)")
    def enable(self, request, queryset):
        count = queryset.update(enabled=True, disabled_reason="")
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
    list_filter = ["state", "kind", "severity", "host"]
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

    @admin.action(description="Acknowledge")
    def acknowledge(self, request, queryset):
        from dockmon_site.permissions import object_allowed

        done = sum(evaluator.acknowledge(a, request.user) for a in queryset if object_allowed(request.user, "change", a))
        self.message_user(request, f"{done} alert(s) acknowledged.")

    @admin.action(description="Resolve")
    def resolve(self, request, queryset):
        from dockmon_site.permissions import object_allowed

        done = sum(evaluator.resolve_by_user(a, request.user) for a in queryset.exclude(state=AlertState.RESOLVED)
                   if object_allowed(request.user, "change", a))
        self.message_user(request, f"{done} alert(s) resolved.")


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(ObjectPermissionAdmin):
    list_display = ["name", "recurrence", "host", "container", "starts_at", "ends_at", "start_time", "duration_minutes", "timezone",
                    "enabled"]
    list_filter = ["recurrence", "enabled", "host"]
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


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "alert", "channel", "event", "status", "attempts", "next_attempt_at", "sent_at", "last_error"]
    list_filter = ["status", "event", "channel"]
    search_fields = ["title", "body", "last_error"]
    list_select_related = ["channel", "alert"]
    readonly_fields = [f.name for f in Notification._meta.fields]
    inlines = [DeliveryInline]
    actions = ["retry_now"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry now")
    def retry_now(self, request, queryset):
        from django.utils import timezone

        count = queryset.filter(status__in=["failed", "pending"]).update(status="pending", next_attempt_at=timezone.now())
        notify.dispatch_due()
        self.message_user(request, f"{count} notification(s) queued.")


@admin.register(ConditionState)
class ConditionStateAdmin(admin.ModelAdmin):
    list_display = ["rule", "subject", "first_breach_at", "last_value", "last_event_id", "last_sample_at", "updated_at"]
    list_filter = ["rule__kind"]
    search_fields = ["subject"]
    readonly_fields = [f.name for f in ConditionState._meta.fields]


@admin.register(SubjectState)
class SubjectStateAdmin(admin.ModelAdmin):
    list_display = ["container_key", "suppressed_until", "reason"]
    search_fields = ["container_key"]


@admin.register(AlertHistory)
class AlertHistoryAdmin(admin.ModelAdmin):
    list_display = ["alert", "ts", "action", "user", "text"]
    list_filter = ["action"]
    search_fields = ["text", "alert__title"]
    readonly_fields = ["alert", "ts", "action", "user", "text"]
