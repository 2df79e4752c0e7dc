from __future__ import annotations

import json
import re
import ssl

from rest_framework import serializers

from containers.models import Container
from dockmon_site import outbound
from dockmon_site.api import SecretField
from healthchecks.models import AutoRestartConfig, CheckResult, HealthCheck, RestartAttempt
from healthchecks.probe import parse_status_spec, public_error

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
MAX_HEADERS = 30


class HealthCheckSerializer(serializers.ModelSerializer):
    container = serializers.CharField(help_text="Container key {host uuid}:{short id}")
    container_name = serializers.CharField(source="container.name", read_only=True)
    host = serializers.UUIDField(source="container.host_id", read_only=True)
    container_health = serializers.CharField(
        source="container.health", read_only=True, help_text="The container's own Docker HEALTHCHECK status"
    )
    headers = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=2000), required=False, write_only=True,
        help_text="Extra request headers; stored encrypted, never returned (see header_names)",
    )
    header_names = serializers.SerializerMethodField()
    basic_auth_password = SecretField(keep_when_blank=True, max_length=500)
    has_basic_auth_password = serializers.SerializerMethodField()
    secrets_cleared = serializers.SerializerMethodField(
        help_text="Secrets this change dropped because the check now points elsewhere (scheme, host, port or TLS trust) "
                  "and they were not given again: header values (\"headers\") and/or \"basic_auth_password\"",
    )

    class Meta:
        model = HealthCheck
        fields = [
            "id", "container", "container_name", "host", "container_health", "name", "url", "method", "expected_status",
            "body_keyword", "headers", "header_names", "basic_auth_user", "basic_auth_password", "has_basic_auth_password",
            "timeout_seconds", "interval_seconds", "follow_redirects", "verify_tls", "tls_ca", "failure_threshold",
            "success_threshold", "auto_restart", "enabled", "secrets_cleared",
            "status", "status_changed_at", "last_checked_at", "last_response_ms", "last_status_code", "last_error",
            "consecutive_failures", "consecutive_successes", "next_due_at", "created_at", "updated_at",
        ]
        read_only_fields = [
            "status", "status_changed_at", "last_checked_at", "last_response_ms", "last_status_code", "last_error",
            "consecutive_failures", "consecutive_successes", "next_due_at", "created_at", "updated_at",
        ]

    def get_header_names(self, obj) -> list[str]:
        return sorted(obj.header_dict)

    def get_has_basic_auth_password(self, obj) -> bool:
        return bool(obj.basic_auth_password)

    def get_secrets_cleared(self, obj) -> list[str]:
        return list(getattr(obj, "secrets_cleared", ()) or ())

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["container"] = instance.container_id
        if "last_error" in data and not self.is_admin():
            data["last_error"] = public_error(data["last_error"])  # no server detail for non-administrators
        return data

    def is_admin(self) -> bool:
        """May choose methods other than GET/HEAD and read every detail of a result."""
        from accounts.roles import is_administrator

        request = self.context.get("request")
        return bool(request is not None and is_administrator(request.user))

    # ---- field validation -----------------------------------------------------------------
    def validate_container(self, value: str) -> Container:
        from containers.permissions import visible_containers

        request = self.context.get("request")
        if self.instance is not None:
            if value != self.instance.container_id:
                raise serializers.ValidationError("A check cannot move to another container; create a new one.")
            return self.instance.container
        container = visible_containers(request.user).filter(pk=value, removed_at__isnull=True).select_related("host").first()
        if container is None:
            raise serializers.ValidationError("No such container.")
        return container

    def validate_url(self, value: str) -> str:
        # The outbound policy: never a registered Docker engine, ports 2375/2376, metadata or
        # link-local, and the administrator's deny/allow lists (enforced again at every run).
        try:
            return outbound.validate_url(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_method(self, value: str) -> str:
        # Methods other than GET/HEAD can change things on the target: administrators only.
        unchanged = self.instance is not None and value == self.instance.method
        if not unchanged:
            try:
                outbound.check_method(value, admin=self.is_admin())
            except ValueError as exc:
                raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_expected_status(self, value: str) -> str:
        try:
            ranges = parse_status_spec(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)

    def validate_headers(self, value: dict) -> dict:
        if len(value) > MAX_HEADERS:
            raise serializers.ValidationError(f"At most {MAX_HEADERS} headers.")
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise serializers.ValidationError(f"{name!r} is not a valid header name.")
            if "\r" in text or "\n" in text:
                raise serializers.ValidationError(f"The value of {name} may not contain line breaks.")
            if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                raise serializers.ValidationError(f"{name} is set by the probe itself.")
        return value

    def validate_tls_ca(self, value: str) -> str:
        value = (value or "").strip()
        if not value:
            return ""
        if "-----BEGIN CERTIFICATE-----" not in value:
            raise serializers.ValidationError("Paste the CA certificate in PEM form (-----BEGIN CERTIFICATE-----).")
        try:
            ssl.create_default_context(cadata=value)
        except (ssl.SSLError, ValueError) as exc:
            raise serializers.ValidationError(f"Not a usable CA certificate: {exc}") from None
        return value + "\n"

    def validate(self, attrs):
        def current(name):
            if name in attrs:
                return attrs[name]
            if self.instance is not None:
                return getattr(self.instance, name)
            return HealthCheck._meta.get_field(name).get_default()

        errors = {}
        if current("timeout_seconds") >= current("interval_seconds"):
            errors["timeout_seconds"] = "The timeout must be shorter than the interval."
        if current("method") == "HEAD" and current("body_keyword"):
            errors["body_keyword"] = "A HEAD response has no body to search; use GET."
        password_set = bool(attrs.get("basic_auth_password")) or (
            "basic_auth_password" not in attrs and self.instance is not None and bool(self.instance.basic_auth_password)
        )
        if password_set and not current("basic_auth_user"):
            errors["basic_auth_user"] = "Give the user name that goes with the password."
        if self.instance is not None and str(current("method")).upper() not in outbound.SAFE_METHODS and not self.is_admin():
            # Where a POST goes and what it carries were approved by an administrator.
            retargeted = [name for name in ("url", "headers") if name in attrs and attrs[name] != (
                self.instance.header_dict if name == "headers" else getattr(self.instance, name))]
            if retargeted:
                errors["method"] = (f"This check sends {current('method')}: only an administrator may change its "
                                    f"{' and '.join(retargeted)}; switch it to GET or HEAD first.")
        if errors:
            raise serializers.ValidationError(errors)
        self._secrets_supplied = [name for name in HealthCheck.SECRET_FIELDS if name in attrs]
        if "headers" in attrs:
            attrs["headers"] = json.dumps(attrs["headers"]) if attrs["headers"] else ""
        return attrs

    def _mark(self, instance: HealthCheck) -> HealthCheck:
        """What this request vouches for (see HealthCheck.save)."""
        instance.secrets_supplied = getattr(self, "_secrets_supplied", ())
        if self.is_admin():
            instance.method_approver = self.context["request"].user
        return instance

    def create(self, validated_data):
        instance = self._mark(HealthCheck(**validated_data))
        instance.save()
        return instance

    def update(self, instance, validated_data):
        return super().update(self._mark(instance), validated_data)


class CheckResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = CheckResult
        fields = ["id", "ts", "scheduled_at", "status", "response_ms", "status_code", "error"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("admin", False):
            data["error"] = public_error(data["error"])
        return data


class TestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    response_ms = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    url = serializers.CharField()
    redirects = serializers.IntegerField()
    check = HealthCheckSerializer()


class ResultHistorySerializer(serializers.Serializer):
    """Shape of GET /health-checks/{id}/results/ (for the schema)."""

    check = serializers.IntegerField()
    range = serializers.CharField()
    bucketed = serializers.BooleanField()
    summary = serializers.DictField()
    points = serializers.ListField(child=serializers.DictField())


class RestartAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = RestartAttempt
        fields = ["id", "container", "health_check", "trigger", "attempt", "delay_seconds", "reason", "status", "due_at",
                  "claimed_at", "finished_at", "action", "error", "created_at"]


class AutoRestartConfigSerializer(serializers.ModelSerializer):
    container = serializers.CharField(source="container_id", read_only=True)
    container_name = serializers.CharField(source="container.name", read_only=True)
    host = serializers.UUIDField(source="container.host_id", read_only=True)
    configured = serializers.SerializerMethodField()
    restart_loop = serializers.SerializerMethodField()
    attempts_list = serializers.SerializerMethodField()

    class Meta:
        model = AutoRestartConfig
        fields = ["container", "container_name", "host", "configured", "enabled", "max_retries", "initial_delay_seconds",
                  "backoff_factor", "max_delay_seconds", "reset_after_minutes", "attempts", "last_attempt_at", "gave_up_at",
                  "restart_loop", "updated_at", "attempts_list"]
        read_only_fields = ["attempts", "last_attempt_at", "gave_up_at", "updated_at"]

    def get_configured(self, obj) -> bool:
        return obj.pk is not None

    def get_restart_loop(self, obj) -> bool:
        return obj.gave_up_at is not None

    def get_attempts_list(self, obj) -> list[dict]:
        if obj.pk is None:
            return []
        recent = RestartAttempt.objects.filter(container_id=obj.container_id)[:20]
        return RestartAttemptSerializer(recent, many=True).data

    def validate(self, attrs):
        def current(name):
            if name in attrs:
                return attrs[name]
            return getattr(self.instance, name) if self.instance is not None else AutoRestartConfig._meta.get_field(name).get_default()

        if current("max_delay_seconds") < current("initial_delay_seconds"):
            raise serializers.ValidationError({"max_delay_seconds": "The longest delay cannot be shorter than the first one."})
        return attrs
