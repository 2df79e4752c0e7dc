from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alerts.choices import (
    AlertState,
    HistoryAction,
    NotificationEvent,
    NotificationStatus,
    RuleKind,
    Scope,
    Severity,
    ThresholdUnit,
    WindowRecurrence,
)
from alerts.templating import validate_template
from alerts.transports import CHANNEL_KINDS
from dockmon_site.crypto import EncryptedTextField, RemembersDestination, is_undecryptable

OPEN_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.SNOOZED)


class NotificationChannel(RemembersDestination, models.Model):
    """Where notifications go. `config` holds the plain settings; the transport's secret
    settings (tokens, passwords, webhook URLs, header values) live encrypted in `secrets`."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=CHANNEL_KINDS)
    config = models.JSONField(default=dict, blank=True)
    secrets = EncryptedTextField(blank=True, default="", help_text="JSON of the secret settings (stored encrypted)")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True, default="", help_text="Why DockMon turned it off (a permanent error)")
    last_error = models.TextField(blank=True, default="")
    last_sent_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def save(self, *args, **kwargs):
        dropped = self.drop_moved_secrets()
        update_fields = kwargs.get("update_fields")
        if dropped and update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "secrets", "enabled", "disabled_reason"}
        super().save(*args, **kwargs)
        self.supplied_secrets = frozenset()
        self._remember_destination()

    @property
    def secret_dict(self) -> dict:
        try:
            value = json.loads(self.secrets or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def set_secrets(self, values: dict) -> None:
        self.secrets = json.dumps(values, sort_keys=True) if values else ""

    @property
    def full_config(self) -> dict:
        """Plain and secret settings together, for the transport."""
        return {**(self.config or {}), **self.secret_dict}

    def clean(self):
        # Forms (the admin): the outbound policy on every URL and host of a changed destination,
        # as the API checks it (who may change it is the surface's business: an administrator).
        from django.core.exceptions import ValidationError

        from alerts import destinations
        from alerts.transports import TRANSPORTS, transport_class

        stored = getattr(self, "_stored_destination", None)
        if self.kind not in TRANSPORTS or (stored is not None and stored[:2] == (self.kind, self.destination())):
            return
        errors = destinations.policy_errors(transport_class(self.kind), self.full_config)
        if errors:
            raise ValidationError({"config": [f"{name}: {text}" for name, text in sorted(errors.items())]})

    # ---- secrets follow their destination ------------------------------------------------
    # Secret settings a surface received again in the same change (the API sets it from the
    # request); a stored secret not named here is dropped when the destination changes.
    supplied_secrets: frozenset = frozenset()

    def destination(self) -> dict:
        """Where the secrets go: the transport's destination settings (base URL, SMTP host,
        port and security, webhook URL), as text."""
        return self.destination_of(self.full_config)

    def destination_of(self, config: dict) -> dict:
        """The destination the settings `config` (plain and secret) would give this channel's kind."""
        from alerts.transports import TRANSPORTS, transport_class

        return transport_class(self.kind).destination(config) if self.kind in TRANSPORTS else {}

    def _remember_destination(self) -> None:
        self._stored_destination = (self.kind, self.destination(), self.secret_dict)

    def drop_moved_secrets(self) -> list[str]:
        """When the kind or the destination differs from what was loaded, drop every stored
        secret this change did not supply again (a new value, or one named in
        `supplied_secrets`). A channel that then lacks a required secret is disabled with the
        reason. Returns the names dropped. Called by save(), so every surface (API, admin,
        config import) gets the rule."""
        from alerts.transports import TRANSPORTS, transport_class

        stored = getattr(self, "_stored_destination", None)
        if self.pk is None or stored is None or stored[:2] == (self.kind, self.destination()):
            return []
        cls = transport_class(self.kind) if self.kind in TRANSPORTS else None
        if is_undecryptable(self.secrets):
            # No key opens what is stored, so nothing can be kept: the old ciphertext must not
            # come back to life at the new destination if the old key is restored later.
            self.secrets = ""
            dropped = sorted(cls.secret_fields) if cls else ["secrets"]
        else:
            old_secrets, secrets = stored[2], self.secret_dict
            kept = {k: v for k, v in secrets.items() if k in self.supplied_secrets or old_secrets.get(k) != v}
            dropped = sorted(set(secrets) - set(kept))
            if not dropped:
                return []
            self.set_secrets(kept)
        required = cls.required_fields if cls else ()
        missing = [name for name in dropped if name in required]
        if missing and self.enabled:
            self.enabled = False
            self.disabled_reason = (f"Where it sends changed: enter {', '.join(missing)} again (a stored secret is never "
                                    "sent to a new destination).")
        return dropped


class AlertRule(models.Model):
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=32, choices=RuleKind.choices, db_index=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
    hosts = models.ManyToManyField("containers.DockerHost", blank=True, related_name="+")
    containers = models.ManyToManyField("containers.Container", blank=True, related_name="+")
    tags = models.ManyToManyField("containers.Tag", blank=True, related_name="+")
    name_regex = models.CharField(max_length=200, blank=True, default="", help_text="Only containers (or hosts) whose name matches")
    threshold = models.FloatField(null=True, blank=True, help_text="cpu/memory: percent; memory/disk: or an absolute size")
    threshold_unit = models.CharField(max_length=8, choices=ThresholdUnit.choices, default=ThresholdUnit.PERCENT)
    clear_threshold = models.FloatField(null=True, blank=True, help_text="Resolves below this (default: the threshold)")
    duration_seconds = models.PositiveIntegerField(default=0, help_text="The condition must hold this long before firing")
    occurrences = models.PositiveIntegerField(default=1, help_text="Fire on the Nth occurrence within the window")
    window_seconds = models.PositiveIntegerField(default=0, help_text="Window for occurrences (0 = no limit)")
    cooldown_seconds = models.PositiveIntegerField(default=300, help_text="At most one notification per alert in this time")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    auto_resolve = models.BooleanField(default=True)
    notify_on_resolve = models.BooleanField(default=True)
    suppress_during_update = models.BooleanField(default=True)
    title_template = models.CharField(max_length=500, blank=True, default="", help_text="Overrides the kind's default title",
                                      validators=[validate_template])
    body_template = models.TextField(blank=True, default="", help_text="Overrides the kind's default message",
                                     validators=[validate_template])
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["enabled", "kind"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def threshold_multiplier(self) -> float:
        from alerts.choices import UNIT_BYTES

        return float(UNIT_BYTES.get(self.threshold_unit, 1))

    @property
    def effective_clear_threshold(self) -> float | None:
        return self.clear_threshold if self.clear_threshold is not None else self.threshold


class Alert(models.Model):
    """One alert: one open row per dedup key; resolved rows are the history."""

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    kind = models.CharField(max_length=32, choices=RuleKind.choices)
    dedup_key = models.CharField(max_length=200, db_index=True)
    scope_type = models.CharField(max_length=16)  # container | host
    scope_id = models.CharField(max_length=64)
    host = models.ForeignKey("containers.DockerHost", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    container = models.ForeignKey("containers.Container", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subject_name = models.CharField(max_length=255, blank=True, default="")
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    title = models.CharField(max_length=500, blank=True, default="")
    message = models.TextField(blank=True, default="")
    value = models.FloatField(null=True, blank=True)
    context = models.JSONField(default=dict, blank=True, help_text="Template variables of the last occurrence")
    occurrences = models.PositiveIntegerField(default=1)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    snoozed_until = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True, help_text="Last time a 'fired' notification was queued")
    # What the channels were last told: "" (nothing), "fired" or "resolved"; a resolve is only
    # worth sending to people who heard about the firing.
    notified_state = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["dedup_key"], condition=~Q(state="resolved"), name="alert_one_open_per_dedup_key"),
        ]
        indexes = [models.Index(fields=["state", "last_seen_at"]), models.Index(fields=["container", "state"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.subject_name} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state != AlertState.RESOLVED


class AlertHistory(models.Model):
    """What happened to an alert, and the annotations people added (action "note")."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="history")
    ts = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=16, choices=HistoryAction.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["ts", "id"]
        verbose_name_plural = "alert history"

    def __str__(self) -> str:
        return f"{self.alert_id} {self.action} {self.ts:%Y-%m-%d %H:%M:%S}"


class ConditionState(models.Model):
    """Per rule and subject: what evaluation needs between events (pending breach, hits in the
    window, the last event or sample applied). Its row lock serialises evaluation of one
    rule/subject pair across workers, and `last_event_id`/`last_sample_at` make re-delivered
    work a no-op."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    subject = models.CharField(max_length=100)  # "container:<key>" | "host:<uuid>"
    host = models.ForeignKey("containers.DockerHost", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    first_breach_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    hits = models.JSONField(default=list, blank=True)
    last_event_id = models.BigIntegerField(default=0)
    last_sample_at = models.DateTimeField(null=True, blank=True)
    context = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "subject"], name="condition_state_unique")]
        indexes = [models.Index(fields=["first_breach_at"])]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.subject}"


class SubjectState(models.Model):
    """Per container: alert suppression while an update of it runs (set by update.started)."""

    container_key = models.CharField(max_length=64, unique=True)
    suppressed_until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["container_key"]

    def __str__(self) -> str:
        return self.container_key


class MaintenanceWindow(models.Model):
    """A blackout: alerts are recorded but their notifications held until it ends.

    Global when it names no host and no container. `once`: starts_at..ends_at. `weekly`: on
    each of `weekdays` (0 = Monday) from `start_time` for `duration_minutes`, in `timezone`.
    """

    name = models.CharField(max_length=100)
    host = models.ForeignKey("containers.DockerHost", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    container = models.ForeignKey("containers.Container", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    recurrence = models.CharField(max_length=8, choices=WindowRecurrence.choices, default=WindowRecurrence.ONCE)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    weekdays = models.JSONField(default=list, blank=True)
    start_time = models.TimeField(null=True, blank=True)
    duration_minutes = models.PositiveIntegerField(default=60)
    timezone = models.CharField(max_length=64, default="UTC")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def covers(self, host_id, container_key: str) -> bool:
        if self.container_id:
            return self.container_id == container_key
        if self.host_id:
            return str(self.host_id) == str(host_id or "")
        return True

    def active_at(self, when: datetime) -> bool:
        return self.current_end(when) is not None

    def current_end(self, when: datetime) -> datetime | None:
        """The end of the occurrence that contains `when`, or None when `when` is outside."""
        if not self.enabled:
            return None
        if self.recurrence == WindowRecurrence.ONCE:
            if self.starts_at and self.ends_at and self.starts_at <= when < self.ends_at:
                return self.ends_at
            return None
        if self.start_time is None or not self.weekdays:
            return None
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        local = when.astimezone(zone)
        duration = timedelta(minutes=self.duration_minutes)
        # An occurrence that started on an earlier day may still run (e.g. 22:00 for 8 hours).
        for back in range(0, duration.days + 2):
            day = (local - timedelta(days=back)).date()
            if day.weekday() not in self.weekdays:
                continue
            # Wall-clock time in the zone: DST shifts move the UTC instant, not the local time.
            start = datetime.combine(day, self.start_time, tzinfo=zone)
            if start <= local < start + duration:
                return (start + duration).astimezone(ZoneInfo("UTC"))
        return None


class Notification(models.Model):
    """One message to one channel about one alert: the outbox row and its delivery log.

    Workers claim a due row with a conditional UPDATE (pending → sending), so several workers
    never send the same notification twice. The unique constraint keeps evaluation from
    queueing the same message twice for one alert episode.
    """

    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    sequence = models.PositiveIntegerField(default=1, help_text="Which firing of the alert this belongs to")
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    title = models.CharField(max_length=500, blank=True, default="")
    body = models.TextField(blank=True, default="")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "channel", "event", "sequence"], condition=Q(alert__isnull=False), name="notification_once_per_episode"
            ),
        ]
        indexes = [
            # The dispatcher's query: due rows waiting to be sent (a partial index on the queue).
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="notification_due_idx"),
            models.Index(fields=["status"]),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.channel_id} ({self.status})"


class DeliveryAttempt(models.Model):
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    ts = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=False)
    status_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["ts", "id"]

    def __str__(self) -> str:
        return f"{self.notification_id} {'ok' if self.ok else 'failed'} {self.ts:%H:%M:%S}"
