"""The healthchecks app's part of the configuration file (see containers/config_io.py).

Section "health_checks": every setting of the checks of present containers, the container named
by host id and name. Header values and the basic-auth password are secrets: the file lists the
header names and whether there was a password, and a check that would miss them after an
import is disabled (a check without its credentials fails, and could restart its container).
Key "auto_restart" of each "containers" entry: the auto-restart settings (null: none).
Results, the current status and restart attempts are history.
"""

from __future__ import annotations

import re

from rest_framework import serializers

from containers.config_io import ExportContext, ImportContext, Skip, ValidationContext, apply_values, pair_up, rows_by_container
from healthchecks.api.serializers import AutoRestartConfigSerializer, HealthCheckSerializer
from healthchecks.models import AutoRestartConfig, HealthCheck, destination_of

SECTIONS = ("health_checks",)
CONTAINER_FIELDS = {"auto_restart": None}
AUTO_RESTART_FIELDS = ("enabled", "max_retries", "initial_delay_seconds", "backoff_factor", "max_delay_seconds", "reset_after_minutes")
CHECK_FIELDS = (
    "name", "url", "method", "expected_status", "body_keyword", "basic_auth_user", "timeout_seconds", "interval_seconds",
    "follow_redirects", "verify_tls", "tls_ca", "failure_threshold", "success_threshold", "auto_restart", "enabled",
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------
def export(ctx: ExportContext) -> None:
    checks = HealthCheck.objects.filter(container__removed_at__isnull=True).select_related("container__host")
    for check in checks.order_by("container__host__name", "container__name", "id"):
        item = {"host": check.container.host_id, "container": check.container.name}
        item.update({name: getattr(check, name) for name in CHECK_FIELDS})
        item["header_names"] = sorted(check.header_dict)
        item["has_basic_auth_password"] = bool(check.basic_auth_password)
        ctx.add("health_checks", item)
    configs = AutoRestartConfig.objects.filter(container__removed_at__isnull=True).select_related("container__host")
    for config in configs:
        ctx.container(config.container)["auto_restart"] = {name: getattr(config, name) for name in AUTO_RESTART_FIELDS}


# ---------------------------------------------------------------------------
# Validation (the API's rules for every setting)
# ---------------------------------------------------------------------------
class PortableHealthCheckSerializer(HealthCheckSerializer):
    host = serializers.UUIDField(help_text="The container's host id")
    container = serializers.CharField(max_length=255, help_text="The container's name on that host")
    header_names = serializers.ListField(child=serializers.CharField(max_length=200), required=False, default=list, max_length=30,
                                         help_text="Headers it sent (their values are not exported)")
    has_basic_auth_password = serializers.BooleanField(required=False, default=False)
    headers = basic_auth_password = container_name = container_health = secrets_cleared = None

    class Meta(HealthCheckSerializer.Meta):
        fields = ["host", "container", *CHECK_FIELDS, "header_names", "has_basic_auth_password"]
        read_only_fields = []

    def validate_container(self, value: str) -> str:
        return value  # a name: found (or not) at import time

    def is_admin(self) -> bool:
        return True  # importing a configuration is for administrators only (containers/api/config.py)

    def validate_header_names(self, value):
        for name in value:
            if not _HEADER_NAME.match(name):
                raise serializers.ValidationError(f"{name!r} is not a valid header name.")
        return sorted(set(value))

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs.get("has_basic_auth_password") and not attrs.get("basic_auth_user"):
            raise serializers.ValidationError({"basic_auth_user": ["Give the user name that goes with the password."]})
        return attrs


class PortableAutoRestartSerializer(AutoRestartConfigSerializer):
    container = container_name = host = configured = restart_loop = attempts_list = None

    class Meta(AutoRestartConfigSerializer.Meta):
        fields = list(AUTO_RESTART_FIELDS)
        read_only_fields = []


class ContainerSettingsSerializer(serializers.Serializer):
    auto_restart = PortableAutoRestartSerializer(required=False, allow_null=True)


def container_serializer():
    return ContainerSettingsSerializer


def validate(ctx: ValidationContext) -> None:
    ctx.clean_section("health_checks", PortableHealthCheckSerializer)
    for item in ctx.cleaned.get("health_checks", []):
        item["host"] = str(item["host"])


def container_refs(ctx: ImportContext):
    return [(item["host"], item["container"]) for item in ctx.items("health_checks")]


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------
def _missing_secrets(check: HealthCheck | None, item: dict) -> list[str]:
    missing = []
    stored = check.header_dict if check is not None else {}
    absent = [name for name in item.get("header_names", []) if not stored.get(name)]
    if absent:
        missing.append("header values (" + ", ".join(absent) + ")")
    if item.get("has_basic_auth_password") and not (check is not None and check.basic_auth_password):
        missing.append("basic-auth password")
    return missing


def import_(ctx: ImportContext) -> None:
    by_container: dict[str, list[tuple[dict, object]]] = {}
    for item in ctx.items("health_checks"):
        label = f"{ctx.container_label(item['host'], item['container'])}: {item.get('name') or item['url']}"
        result = ctx.item("health_checks", label)
        container, reason = ctx.container(item["host"], item["container"])
        if container is None:
            result.skip(reason)
            continue
        by_container.setdefault(container.pk, []).append((item, result))
    stored = rows_by_container(HealthCheck.objects.order_by("id"), list(by_container), many=True)
    for container_key, items in by_container.items():
        pairs = pair_up([item for item, _ in items], stored.get(container_key, []), key=_check_key)
        for (item, result), (_, check) in zip(items, pairs, strict=True):
            with ctx.guard(result):
                _import_check(ctx, container_key, item, check, result)
    entries = [(entry, container, result) for entry, container, result in ctx.container_entries() if "auto_restart" in entry]
    configs = rows_by_container(AutoRestartConfig.objects.all(), [c.pk for _, c, _ in entries])
    for entry, container, result in entries:
        with ctx.guard(result):
            result.changed(_set_auto_restart(container, entry["auto_restart"], configs.get(container.pk)))


def _check_key(obj) -> tuple[str, str]:
    if isinstance(obj, dict):
        return obj.get("name", ""), obj["url"]
    return obj.name, obj.url


def _import_check(ctx: ImportContext, container_key: str, item: dict, check: HealthCheck | None, result) -> None:
    from accounts.roles import is_administrator

    values = {name: item[name] for name in CHECK_FIELDS if name in item}
    # Secrets follow their destination: a check the file points elsewhere loses its stored ones.
    moving = check is not None and destination_of(
        values.get("url", check.url), values.get("verify_tls", check.verify_tls), values.get("tls_ca", check.tls_ca)
    ) != check.destination()
    missing = _missing_secrets(None if moving else check, item)
    if missing:
        values["enabled"] = False
        result.note(f"needs its {' and '.join(missing)} again (not in the file): disabled until they are entered")
    approver = ctx.user if ctx.user is not None and is_administrator(ctx.user) else None
    retargeted = check is None or any(name in values and values[name] != getattr(check, name) for name in ("method", "url"))
    if str(values.get("method", check.method if check else "GET")).upper() not in ("GET", "HEAD") and approver is None \
            and retargeted:
        result.note("sends a method other than GET/HEAD: it runs once an administrator saves it")
    if check is None:
        check = HealthCheck(container_id=container_key, created_by=ctx.user, **values)
        check.method_approver = approver
        check.save()
        result.created()
        return
    check.method_approver = approver
    if check.basic_auth_password and "basic_auth_user" in values and not values["basic_auth_user"]:
        raise Skip("its stored basic-auth password needs a user name")
    if apply_values(check, values):
        check.save()
        result.updated()


def _set_auto_restart(container, value: dict | None, current) -> bool:
    if value is None:
        if current is None:
            return False
        current.delete()
        return True
    if current is None:
        AutoRestartConfig.objects.create(container=container, **value)
        return True
    if apply_values(current, value):
        current.save(update_fields=[*value, "updated_at"])
        return True
    return False
