from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from alerts import regexguard, templating
from alerts.choices import HOST_KINDS, THRESHOLD_KINDS, RuleKind, Scope, ThresholdUnit, WindowRecurrence
from alerts.models import Alert, AlertHistory, AlertRule, DeliveryAttempt, MaintenanceWindow, Notification, NotificationChannel
from alerts.transports import TRANSPORTS, transport_class
from containers.models import Container, DockerHost, Tag


def _request_user(serializer):
    request = serializer.context.get("request")
    return getattr(request, "user", None)


# ---------------------------------------------------------------------------
# Channels
# ---------------------------------------------------------------------------
class NotificationChannelSerializer(serializers.ModelSerializer):
    config = serializers.DictField(
        required=False, default=dict,
        help_text="The transport's settings, e.g. webhook: {url, headers?}; secret ones (tokens, passwords, webhook URLs, "
                  "header values) are write-only: reads list their names in secret_fields_set. On update, a secret left out "
                  "or blank keeps its stored value.",
    )
    secret_fields_set = serializers.SerializerMethodField()

    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "config", "secret_fields_set", "enabled", "disabled_reason", "last_error", "last_sent_at",
                  "created_at", "updated_at"]
        read_only_fields = ["disabled_reason", "last_error", "last_sent_at", "created_at", "updated_at"]

    def get_secret_fields_set(self, obj) -> list[str]:
        return sorted(k for k, v in obj.secret_dict.items() if v not in ("", None, {}))

    def to_representation(self, instance):
        data = super().to_representation(instance)
        secret = set(transport_class(instance.kind).secret_fields) if instance.kind in TRANSPORTS else set()
        data["config"] = {k: v for k, v in (instance.config or {}).items() if k not in secret}
        if "headers" in instance.secret_dict:
            data["config"]["header_names"] = sorted(instance.secret_dict.get("headers") or {})
        return data

    def validate(self, attrs):
        kind = attrs.get("kind") or getattr(self.instance, "kind", None)
        if kind not in TRANSPORTS:
            raise serializers.ValidationError({"kind": "Unknown channel kind."})
        transport = transport_class(kind)
        incoming = dict(attrs.get("config", {}) if "config" in attrs or self.instance is None else {})
        merged: dict = {}
        if self.instance is not None and (self.instance.kind == kind):
            merged.update(self.instance.full_config)
            if "config" in attrs:
                # Plain settings are replaced as a whole; secrets left out or blank are kept.
                merged = {k: v for k, v in merged.items() if k in transport.secret_fields}
        for key, value in incoming.items():
            if key in transport.secret_fields and value in ("", None) and key in merged:
                continue
            merged[key] = value
        merged = {k: v for k, v in merged.items() if v not in (None, "")}
        supplied = {k for k, v in incoming.items() if k in transport.secret_fields and v not in ("", None)}
        dropped = self._drop_moved_secrets(kind, transport, merged, supplied)
        errors = transport.validate(merged)
        for name in dropped:
            if name in errors:
                errors[name] = ("Where this channel sends changed: enter this secret again (a stored secret is never sent to a "
                                "new destination).")
        errors.update(self._destination_errors(kind, transport, merged))
        if errors:
            raise serializers.ValidationError({"config": errors})
        attrs["_plain"] = {k: v for k, v in merged.items() if k not in transport.secret_fields}
        attrs["_secrets"] = {k: v for k, v in merged.items() if k in transport.secret_fields}
        attrs["_supplied"] = frozenset(supplied)
        attrs.pop("config", None)
        return attrs

    def _drop_moved_secrets(self, kind, transport, merged: dict, supplied: set) -> list[str]:
        """Secrets follow their destination: when this change moves the channel (another base
        URL, SMTP host/port/security, webhook URL), stored secrets it does not supply again are
        dropped from `merged` (a required one then fails validation). Returns their names."""
        if self.instance is None or self.instance.kind != kind:
            return []  # a new channel, or a new kind (nothing stored is carried over)
        if transport.destination(merged) == self.instance.destination():
            return []
        dropped = [k for k in transport.secret_fields if k in merged and k not in supplied]
        for name in dropped:
            merged.pop(name)
        return dropped

    def _destination_errors(self, kind, transport, merged: dict) -> dict:
        """Who may choose where the channel sends, and the outbound policy on it
        (alerts/destinations.py)."""
        from alerts import destinations

        previous = self.instance.destination() if self.instance is not None and self.instance.kind == kind else None
        return destinations.config_errors(transport, merged, user=_request_user(self), previous=previous)

    def _save(self, instance, validated):
        plain, secrets = validated.pop("_plain"), validated.pop("_secrets")
        instance.supplied_secrets = validated.pop("_supplied", frozenset())
        for key, value in validated.items():
            setattr(instance, key, value)
        instance.config = plain
        instance.set_secrets(secrets)
        if validated.get("enabled") and instance.disabled_reason:
            instance.disabled_reason = ""  # turned back on by a person: the old reason no longer applies
        instance.save()
        return instance

    def create(self, validated_data):
        return self._save(NotificationChannel(created_by=_request_user(self)), validated_data)

    def update(self, instance, validated_data):
        return self._save(instance, validated_data)


class ChannelTestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    notification = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    status_code = serializers.IntegerField(allow_null=True)
    permanent = serializers.BooleanField()


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------
class _RelatedList(serializers.ListField):
    """A many-to-many written as a list of ids (or names) and read the same way."""

    def __init__(self, *, attr: str = "pk", **kwargs):
        self.attr = attr
        super().__init__(required=False, default=list, **kwargs)

    def to_representation(self, data):
        if hasattr(data, "all"):
            return [str(getattr(obj, self.attr)) if self.attr == "pk" and not isinstance(obj.pk, int) else getattr(obj, self.attr)
                    for obj in data.all()]
        return super().to_representation(data)


class AlertRuleSerializer(serializers.ModelSerializer):
    hosts = _RelatedList(child=serializers.UUIDField())
    containers = _RelatedList(child=serializers.CharField(max_length=64))
    tags = _RelatedList(child=serializers.CharField(max_length=100), attr="name")
    channels = _RelatedList(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1))  # ids the database can hold
    open_alerts = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = [
            "id", "name", "kind", "scope", "hosts", "containers", "tags", "name_regex", "threshold", "threshold_unit",
            "clear_threshold", "duration_seconds", "occurrences", "window_seconds", "cooldown_seconds", "severity", "auto_resolve",
            "notify_on_resolve", "suppress_during_update", "title_template", "body_template", "channels", "enabled", "open_alerts",
            "created_at", "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def get_open_alerts(self, obj) -> int:
        value = getattr(obj, "n_open", None)
        return value if value is not None else obj.alerts.exclude(state="resolved").count()

    # ---- fields ---------------------------------------------------------------------------
    def validate_name_regex(self, value: str) -> str:
        try:
            return regexguard.validate(value) if value else ""
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_title_template(self, value: str) -> str:
        try:
            return templating.check(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    validate_body_template = validate_title_template

    def validate_hosts(self, value):
        from containers.permissions import visible_hosts

        wanted = {str(v) for v in value}
        found = {str(pk) for pk in visible_hosts(_request_user(self)).filter(pk__in=wanted).values_list("pk", flat=True)}
        missing = sorted(wanted - found)
        if missing:
            raise serializers.ValidationError(f"No such host: {', '.join(missing)}")
        return sorted(found)

    def validate_containers(self, value):
        from containers.permissions import visible_containers

        wanted = set(value)
        found = set(visible_containers(_request_user(self)).filter(pk__in=wanted).values_list("pk", flat=True))
        missing = sorted(wanted - found)
        if missing:
            raise serializers.ValidationError(f"No such container: {', '.join(missing)}")
        return sorted(found)

    def validate_channels(self, value):
        from alerts.api.views import visible_channels

        wanted = set(value)
        found = set(visible_channels(_request_user(self)).filter(pk__in=wanted).values_list("pk", flat=True))
        missing = sorted(wanted - found)
        if missing:
            raise serializers.ValidationError(f"No such channel: {', '.join(map(str, missing))}")
        return sorted(found)

    def validate(self, attrs):
        def get(name, default=None):
            if name in attrs:
                return attrs[name]
            if self.instance is not None:
                value = getattr(self.instance, name)
                if name in ("hosts", "containers", "tags", "channels"):
                    return list(value.all())
                return value
            return default

        errors = {}
        kind, scope = get("kind"), get("scope", Scope.ALL)
        threshold, unit, clear = get("threshold"), get("threshold_unit", ThresholdUnit.PERCENT), get("clear_threshold")
        if kind in THRESHOLD_KINDS:
            if threshold is None:
                errors["threshold"] = "This kind needs a threshold."
            elif threshold < 0:
                errors["threshold"] = "Must not be negative."
            if kind == RuleKind.CPU_HIGH and unit != ThresholdUnit.PERCENT:
                errors["threshold_unit"] = "CPU thresholds are percentages."
            if kind == RuleKind.DISK_HIGH and unit == ThresholdUnit.PERCENT:
                errors["threshold_unit"] = "Disk use is a size: use bytes, mib or gib."
            if clear is not None and threshold is not None and clear > threshold:
                errors["clear_threshold"] = "Must not be above the threshold."
        if kind in HOST_KINDS and scope == Scope.TAGS:
            errors["scope"] = "Host alerts apply to all hosts, chosen hosts or the hosts of chosen containers."
        if scope == Scope.HOSTS and not get("hosts"):
            errors["hosts"] = "Choose at least one host."
        if scope == Scope.CONTAINERS and not get("containers"):
            errors["containers"] = "Choose at least one container."
        if scope == Scope.TAGS and not get("tags"):
            errors["tags"] = "Choose at least one tag."
        if get("occurrences", 1) < 1:
            errors["occurrences"] = "At least 1."
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _save(self, instance, validated):
        relations = {name: validated.pop(name) for name in ("hosts", "containers", "tags", "channels") if name in validated}
        for key, value in validated.items():
            setattr(instance, key, value)
        instance.save()
        if "hosts" in relations:
            instance.hosts.set(DockerHost.objects.filter(pk__in=relations["hosts"]))
        if "containers" in relations:
            instance.containers.set(Container.objects.filter(pk__in=relations["containers"]))
        if "tags" in relations:
            instance.tags.set([Tag.objects.get_or_create(name=name.strip())[0] for name in relations["tags"] if name.strip()])
        if "channels" in relations:
            instance.channels.set(NotificationChannel.objects.filter(pk__in=relations["channels"]))
        return instance

    def create(self, validated_data):
        return self._save(AlertRule(created_by=_request_user(self)), validated_data)

    def update(self, instance, validated_data):
        return self._save(instance, validated_data)


# ---------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------
class AlertSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True, default="")
    container = serializers.CharField(source="container_id", read_only=True, allow_null=True)
    # allow_null, not default=None: documented as nullable, and kept in PATCH answers (DRF skips
    # a field whose default stands in during a partial update).
    acknowledged_by = serializers.CharField(source="acknowledged_by.username", read_only=True, allow_null=True)
    resolved_by = serializers.CharField(source="resolved_by.username", read_only=True, allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id", "rule", "rule_name", "kind", "dedup_key", "scope_type", "scope_id", "state", "severity", "host", "container",
            "subject_name", "occurrences", "first_seen_at", "last_seen_at", "resolved_at", "resolved_by", "acknowledged_at",
            "acknowledged_by", "snoozed_until", "title", "message", "value", "notified_state",
        ]
        read_only_fields = fields


class SnoozeSerializer(serializers.Serializer):
    minutes = serializers.IntegerField(min_value=1, max_value=60 * 24 * 30, required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        if "until" in attrs:
            if attrs["until"] <= timezone.now():
                raise serializers.ValidationError({"until": "Must be in the future."})
            return {"until": attrs["until"]}
        return {"until": timezone.now() + timedelta(minutes=attrs.get("minutes", 60))}


class NoteSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=4000)


class AlertHistorySerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True, allow_null=True)  # null: DockMon did it

    class Meta:
        model = AlertHistory
        fields = ["id", "ts", "action", "user", "text"]


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["ts", "ok", "status_code", "error", "duration_ms"]


class NotificationSerializer(serializers.ModelSerializer):
    channel_name = serializers.CharField(source="channel.name", read_only=True)
    deliveries = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "alert", "channel", "channel_name", "event", "sequence", "status", "title", "body", "attempts",
                  "next_attempt_at", "last_error", "sent_at", "created_at", "deliveries"]


# ---------------------------------------------------------------------------
# Maintenance windows
# ---------------------------------------------------------------------------
class MaintenanceWindowSerializer(serializers.ModelSerializer):
    container = serializers.CharField(source="container_id", required=False, allow_null=True, allow_blank=True)
    active_now = serializers.SerializerMethodField()

    class Meta:
        model = MaintenanceWindow
        fields = ["id", "name", "host", "container", "recurrence", "starts_at", "ends_at", "weekdays", "start_time",
                  "duration_minutes", "timezone", "enabled", "active_now", "created_at"]
        read_only_fields = ["created_at"]

    def get_active_now(self, obj) -> bool:
        return obj.active_at(timezone.now())

    def validate_host(self, value):
        from containers.permissions import visible_hosts

        if value is not None and not visible_hosts(_request_user(self)).filter(pk=value.pk).exists():
            raise serializers.ValidationError("No such host.")
        return value

    def validate_container(self, value):
        from containers.permissions import visible_containers

        if not value:
            return None
        if not visible_containers(_request_user(self)).filter(pk=value).exists():
            raise serializers.ValidationError("No such container.")
        return value

    def validate_timezone(self, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError("Unknown time zone.") from None
        return value

    def validate_weekdays(self, value):
        if not isinstance(value, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in value):
            raise serializers.ValidationError("Give weekdays as numbers 0 (Monday) to 6 (Sunday).")
        return sorted(set(value))

    def validate(self, attrs):
        def get(name):
            return attrs[name] if name in attrs else getattr(self.instance, name, None)

        errors = {}
        if get("recurrence") == WindowRecurrence.WEEKLY:
            if not get("weekdays"):
                errors["weekdays"] = "Choose at least one day."
            if get("start_time") is None:
                errors["start_time"] = "Required for a weekly window."
            if not get("duration_minutes"):
                errors["duration_minutes"] = "Required for a weekly window."
        else:
            if not get("starts_at") or not get("ends_at"):
                errors["ends_at"] = "A one-off window needs starts_at and ends_at."
            elif get("ends_at") <= get("starts_at"):
                errors["ends_at"] = "Must be after starts_at."
        if get("host") is not None and get("container_id"):
            errors["container"] = "Name a host or a container, not both."
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def create(self, validated_data):
        validated_data["created_by"] = _request_user(self)
        return super().create(validated_data)
