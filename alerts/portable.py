"""The alerts app's part of the configuration file (see containers/config_io.py).

Sections "notification_channels" (the plain settings only: which ones are secret is the
transport's `secret_fields`, so the file lists the secret settings a channel had in
`secrets_needed`; a channel that would miss one after an import is disabled), "alert_rules"
(scope by host ids, containers by host id and name, tag names, channels by name) and
"maintenance_windows". Alerts, notifications and deliveries are history.
"""

from __future__ import annotations

from rest_framework import serializers

from alerts import destinations
from alerts.api.serializers import AlertRuleSerializer, MaintenanceWindowSerializer
from alerts.choices import Scope
from alerts.models import AlertRule, MaintenanceWindow, NotificationChannel
from alerts.transports import TRANSPORTS, transport_class
from containers.config_io import (
    ContainerRefSerializer,
    ExportContext,
    ImportContext,
    Skip,
    ValidationContext,
    apply_values,
    pair_up,
)
from containers.models import Tag

SECTIONS = ("notification_channels", "alert_rules", "maintenance_windows")
RULE_FIELDS = (
    "name", "kind", "scope", "name_regex", "threshold", "threshold_unit", "clear_threshold", "duration_seconds", "occurrences",
    "window_seconds", "cooldown_seconds", "severity", "auto_resolve", "notify_on_resolve", "suppress_during_update",
    "title_template", "body_template", "enabled",
)
WINDOW_FIELDS = ("name", "recurrence", "starts_at", "ends_at", "weekdays", "start_time", "duration_minutes", "timezone", "enabled")


def secret_fields(kind: str) -> tuple[str, ...]:
    return tuple(transport_class(kind).secret_fields) if kind in TRANSPORTS else ()


def transport_errors(transport, config: dict) -> dict:
    """The transport's own field errors for `config` (values of any JSON type are refused, not raised)."""
    try:
        return transport.validate(config)
    except (TypeError, ValueError, AttributeError):
        return {"config": "These settings are not valid for this kind of channel."}


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------
def export(ctx: ExportContext) -> None:
    for channel in NotificationChannel.objects.order_by("name"):
        secret = secret_fields(channel.kind)
        ctx.add("notification_channels", {
            "name": channel.name, "kind": channel.kind, "enabled": channel.enabled,
            "config": {k: v for k, v in (channel.config or {}).items() if k not in secret},
            "secrets_needed": sorted(k for k, v in channel.secret_dict.items() if v not in ("", None, {}, [])),
        })
    rules = AlertRule.objects.prefetch_related("hosts", "containers__host", "tags", "channels").order_by("name", "id")
    for rule in rules:
        item = {name: getattr(rule, name) for name in RULE_FIELDS}
        item["hosts"] = sorted(str(h.pk) for h in rule.hosts.all())
        item["containers"] = _refs(ctx, rule.containers.all())
        item["tags"] = sorted(t.name for t in rule.tags.all())
        item["channels"] = sorted(c.name for c in rule.channels.all())
        ctx.add("alert_rules", item)
    for window in MaintenanceWindow.objects.select_related("container").order_by("name", "id"):
        item = {name: getattr(window, name) for name in WINDOW_FIELDS}
        item["host"] = str(window.host_id) if window.host_id else None
        item["container"] = ctx.ref(window.container) if window.container_id else None
        ctx.add("maintenance_windows", item)


def _refs(ctx: ExportContext, containers) -> list[dict]:
    """Containers by host and name; a name that is there twice (a removed one and its
    successor) is one reference."""
    refs = {(str(c.host_id), c.name) for c in containers}
    return [{"host": host, "name": name} for host, name in sorted(refs)]


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------
class PortableChannelSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=[(k, label) for k, (label, _) in TRANSPORTS.items()])
    config = serializers.DictField(required=False, default=dict, help_text="The plain settings (no secret ones)")
    secrets_needed = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list,
                                           help_text="Secret settings it had (not exported): enter them again")
    enabled = serializers.BooleanField(required=False, default=True)

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("Enter a name.")
        return value

    def validate(self, attrs):
        transport = transport_class(attrs["kind"])
        secret = set(transport.secret_fields)
        config = {k: v for k, v in attrs.get("config", {}).items() if v not in (None, "")}
        errors = {}
        carried = sorted(secret & set(config))
        if carried:
            errors["config"] = [f"{', '.join(carried)}: secret settings are not imported; enter them in DockMon after the import."]
        else:
            # The transport's own rules for the plain settings; the secret ones are not here.
            problems = {k: v for k, v in transport_errors(transport, config).items() if k not in secret}
            # The outbound policy on the URLs and hosts the file names (imports are for
            # administrators, so only what they may point a channel at is checked).
            problems.update(destinations.policy_errors(transport, config))
            if problems:
                errors["config"] = problems
        unknown = sorted(set(attrs.get("secrets_needed", [])) - secret)
        if unknown:
            errors["secrets_needed"] = [f"Not a secret setting of {attrs['kind']}: {', '.join(unknown)}."]
        if errors:
            raise serializers.ValidationError(errors)
        attrs["config"] = config
        attrs["secrets_needed"] = sorted(set(attrs.get("secrets_needed", [])))
        return attrs


class PortableRuleSerializer(AlertRuleSerializer):
    """A rule with its references by name; the API's rules for everything else."""

    hosts = serializers.ListField(child=serializers.UUIDField(), required=False, default=list)
    containers = serializers.ListField(child=ContainerRefSerializer(), required=False, default=list)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)
    channels = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list,
                                     help_text="Notification channels by name")
    open_alerts = None

    class Meta(AlertRuleSerializer.Meta):
        fields = [*RULE_FIELDS, "hosts", "containers", "tags", "channels"]
        read_only_fields = []

    def validate_hosts(self, value):
        return sorted({str(v) for v in value})

    def validate_containers(self, value):
        return sorted({(str(ref["host"]), ref["name"]) for ref in value})

    def validate_tags(self, value):
        return sorted({name.strip() for name in value if name.strip()})

    def validate_channels(self, value):
        return sorted({name.strip() for name in value if name.strip()})


class PortableWindowSerializer(MaintenanceWindowSerializer):
    host = serializers.UUIDField(required=False, allow_null=True, default=None)
    container = ContainerRefSerializer(required=False, allow_null=True, default=None)
    active_now = None

    class Meta(MaintenanceWindowSerializer.Meta):
        fields = [*WINDOW_FIELDS, "host", "container"]
        read_only_fields = []

    def validate_host(self, value):
        return str(value) if value else None

    def validate_container(self, value):
        return (str(value["host"]), value["name"]) if value else None

    def validate(self, attrs):
        if attrs.get("host") and attrs.get("container"):
            raise serializers.ValidationError({"container": ["Name a host or a container, not both."]})
        return super().validate(attrs)


def validate(ctx: ValidationContext) -> None:
    ctx.clean_section("notification_channels", PortableChannelSerializer, identities=(lambda c: c["name"],))
    ctx.clean_section("alert_rules", PortableRuleSerializer)
    ctx.clean_section("maintenance_windows", PortableWindowSerializer)


def container_refs(ctx: ImportContext):
    refs = [ref for rule in ctx.items("alert_rules") for ref in rule.get("containers", [])]
    refs += [w["container"] for w in ctx.items("maintenance_windows") if w.get("container")]
    return refs


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------
def import_(ctx: ImportContext) -> None:
    for item in ctx.items("notification_channels"):
        result = ctx.item("notification_channels", item["name"])
        with ctx.guard(result):
            _import_channel(ctx, item, result)
    rules = list(AlertRule.objects.order_by("id"))
    for item, rule in pair_up(ctx.items("alert_rules"), rules, key=_rule_key):
        result = ctx.item("alert_rules", item["name"])
        with ctx.guard(result):
            _import_rule(ctx, item, rule, result)
    windows = list(MaintenanceWindow.objects.order_by("id"))
    targets = [_window_target(ctx, item) for item in ctx.items("maintenance_windows")]
    items = [{**item, "_target": target[:2]} for item, target in zip(ctx.items("maintenance_windows"), targets, strict=True)]
    for (item, window), (host_id, container_key, reason) in zip(pair_up(items, windows, key=_window_key), targets, strict=True):
        result = ctx.item("maintenance_windows", item["name"])
        if reason:
            result.skip(reason)
            continue
        with ctx.guard(result):
            values = {name: item[name] for name in WINDOW_FIELDS if name in item}
            values.update(host_id=host_id, container_id=container_key)
            if window is None:
                MaintenanceWindow.objects.create(created_by=ctx.user, **values)
                result.created()
            elif apply_values(window, values):
                window.save()
                result.updated()


# ---- channels ---------------------------------------------------------------------------
def _import_channel(ctx: ImportContext, item: dict, result) -> None:
    channel = NotificationChannel.objects.filter(name=item["name"]).first()
    if channel is not None and channel.kind != item["kind"]:
        raise Skip(f"a {channel.kind} channel is named {item['name']!r} here")
    transport = transport_class(item["kind"])
    stored = channel.secret_dict if channel is not None else {}
    if channel is not None and channel.destination_of({**item["config"], **stored}) != channel.destination():
        # The file sends the channel elsewhere (another base URL, SMTP host...): its stored
        # secrets are dropped on save (NotificationChannel.save()), never sent there.
        stored = {}
        result.note("sends somewhere else now: its stored secret settings were dropped")
    missing = [name for name in item["secrets_needed"] if stored.get(name) in (None, "", {}, [])]
    # The transport's required settings, secret ones included, must all be there to send.
    merged = {**item["config"], **{k: v for k, v in stored.items() if v not in (None, "", {}, [])}}
    missing += [name for name in transport_errors(transport, merged) if name in transport.secret_fields and name not in missing]
    values = {"config": item["config"], "enabled": item["enabled"]}
    if missing:
        values["enabled"] = False
        result.note(f"needs its secret settings ({', '.join(sorted(missing))}) again: disabled until they are entered")
    if channel is None:
        channel = NotificationChannel(name=item["name"], kind=item["kind"], created_by=ctx.user, **values)
        if missing:
            channel.disabled_reason = "Imported without its secret settings: enter them and enable the channel."
        channel.save()
        result.created()
        return
    turned_on = values["enabled"] and not channel.enabled
    if apply_values(channel, values):
        if turned_on and channel.disabled_reason:
            channel.disabled_reason = ""  # as when a person turns it back on through the API
        channel.save()  # stored secrets stay, unless the destination moved
        result.updated()


# ---- rules ------------------------------------------------------------------------------
def _rule_key(obj) -> tuple[str, str]:
    if isinstance(obj, dict):
        return obj["name"], obj["kind"]
    return obj.name, obj.kind


def _import_rule(ctx: ImportContext, item: dict, rule: AlertRule | None, result) -> None:
    hosts, containers, channels, missing = [], [], [], []
    for host_id in item.get("hosts", []):
        host = ctx.local_host(host_id)
        if host is None:
            missing.append(f"host {ctx.host_label(host_id)}")
        else:
            hosts.append(host)
    for host_id, name in item.get("containers", []):
        container, _ = ctx.container(host_id, name)
        if container is None:
            missing.append(f"container {ctx.container_label(host_id, name)}")
        else:
            containers.append(container)
    for name in item.get("channels", []):
        channel = NotificationChannel.objects.filter(name=name).first()
        if channel is None:
            missing.append(f"channel {name!r}")
        else:
            channels.append(channel)
    scope = item.get("scope", rule.scope if rule is not None else Scope.ALL)
    if (scope == Scope.HOSTS and item.get("hosts") and not hosts) or (scope == Scope.CONTAINERS and item.get("containers") and not containers):
        raise Skip(f"none of what it watches is here yet ({'; '.join(missing)}); import again once it is")
    if missing:
        result.note(f"not bound yet (import again once they exist): {'; '.join(missing)}")
    values = {name: item[name] for name in RULE_FIELDS if name in item}
    if rule is None:
        rule = AlertRule.objects.create(created_by=ctx.user, **values)
        result.created()
    elif apply_values(rule, values):
        rule.save()
        result.updated()
    relations = {
        "hosts": ("hosts" in item, hosts),
        "containers": ("containers" in item, containers),
        "channels": ("channels" in item, channels),
        "tags": ("tags" in item, [Tag.objects.get_or_create(name=name)[0] for name in item.get("tags", [])]),
    }
    for name, (given, objects) in relations.items():
        if not given:
            continue
        manager = getattr(rule, name)
        if {o.pk for o in manager.all()} != {o.pk for o in objects}:
            manager.set(objects)
            result.updated()


# ---- maintenance windows ----------------------------------------------------------------
def _window_target(ctx: ImportContext, item: dict) -> tuple:
    """(host id, container key, why it cannot be imported) of a window; never global by accident."""
    if item.get("container"):
        host_id, name = item["container"]
        container, reason = ctx.container(host_id, name)
        return (None, container.pk, "") if container is not None else (None, None, reason)
    if item.get("host"):
        host = ctx.local_host(item["host"])
        if host is None:
            return None, None, f"host {ctx.host_label(item['host'])} is not in this DockMon"
        return host.pk, None, ""
    return None, None, ""


def _window_key(obj) -> tuple:
    if isinstance(obj, dict):
        host_id, container_key = obj["_target"]
        return obj["name"], str(host_id or ""), container_key or ""
    return obj.name, str(obj.host_id or ""), obj.container_id or ""
