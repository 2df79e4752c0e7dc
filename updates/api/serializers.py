from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rest_framework import serializers

from containers.models import Container
from containers.permissions import visible_containers, visible_hosts
from dockmon_site.api import pem_certificates
from updates.choices import Policy, TrackingMode
from updates.models import ContainerUpdate, PolicyCategory, RegistryCredential, UpdatePolicy
from updates.policies import decide
from updates.registry import canonical_registry


class DecisionSerializer(serializers.Serializer):
    policy = serializers.ChoiceField(choices=Policy.choices)
    rule = serializers.CharField()
    reason = serializers.CharField()


class ContainerUpdateSerializer(serializers.ModelSerializer):
    key = serializers.CharField(source="container_id", read_only=True)
    container = serializers.CharField(source="container_id", read_only=True)
    name = serializers.CharField(source="container.name", read_only=True)
    host = serializers.UUIDField(source="container.host_id", read_only=True)
    host_name = serializers.CharField(source="container.host.name", read_only=True)
    policy = serializers.SerializerMethodField()

    class Meta:
        model = ContainerUpdate
        fields = [
            "key", "container", "name", "host", "host_name", "image", "current_digest", "current_version",
            "latest_digest", "latest_version", "update_available", "tracking_mode", "include_prerelease", "status",
            "error", "checked_at", "available_since", "policy",
        ]
        read_only_fields = [f for f in fields if f not in ("tracking_mode", "include_prerelease")]

    def get_policy(self, obj) -> DecisionSerializer:
        decisions = self.context.get("decisions")
        decision = decisions.get(obj.container_id) if decisions is not None else None
        if decision is None:
            decision = decide(obj.container)
        return {"policy": decision.policy, "rule": decision.rule, "reason": decision.reason}


class CheckRequestSerializer(serializers.Serializer):
    containers = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=20000)
    hosts = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=1000)
    force = serializers.BooleanField(required=False, default=True, help_text="Bypass the registry answer cache (default for manual checks)")

    def validate_containers(self, value):
        value = list(dict.fromkeys(value))
        user = self.context["request"].user
        found = set(visible_containers(user, queryset=Container.objects.present().filter(pk__in=value)).values_list("pk", flat=True))
        unknown = [key for key in value if key not in found]
        if unknown:
            # Unknown and not-permitted look alike: nobody learns which keys exist elsewhere.
            raise serializers.ValidationError(f"Unknown container(s): {', '.join(unknown[:20])}")
        return value

    def validate_hosts(self, value):
        value = list(dict.fromkeys(value))
        user = self.context["request"].user
        found = set(visible_hosts(user).filter(pk__in=value).values_list("pk", flat=True))
        unknown = [str(h) for h in value if h not in found]
        if unknown:
            raise serializers.ValidationError(f"Unknown host(s): {', '.join(unknown[:20])}")
        return [str(h) for h in value]


class CheckAcceptedSerializer(serializers.Serializer):
    check = serializers.CharField()
    containers = serializers.IntegerField()


class StepSerializer(serializers.Serializer):
    rule = serializers.CharField()
    matched = serializers.BooleanField()
    note = serializers.CharField()


class ExplanationSerializer(serializers.Serializer):
    container = serializers.CharField()
    name = serializers.CharField()
    policy = serializers.ChoiceField(choices=Policy.choices)
    rule = serializers.CharField()
    reason = serializers.CharField()
    details = serializers.DictField()
    steps = StepSerializer(many=True)
    auto_update = serializers.BooleanField(help_text="Auto-update may update it")
    manual_update = serializers.BooleanField(help_text="A manual update may run without force")
    manual_update_with_force = serializers.BooleanField()


class UpdatePolicySerializer(serializers.ModelSerializer):
    container = serializers.CharField(source="container_id", max_length=64)
    container_name = serializers.CharField(source="container.name", read_only=True)
    # allow_null, not default=None: documented as nullable, and kept in PATCH answers.
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = UpdatePolicy
        fields = ["id", "container", "container_name", "policy", "note", "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]

    def validate_container(self, value):
        if self.instance is not None and value != self.instance.container_id:
            raise serializers.ValidationError("A policy cannot move to another container; delete it and create one.")
        user = self.context["request"].user
        if not visible_containers(user).filter(pk=value).exists():
            raise serializers.ValidationError("Unknown container.")
        if self.instance is None and UpdatePolicy.objects.filter(container_id=value).exists():
            raise serializers.ValidationError("This container already has a policy; change that one.")
        return value


class PolicyCategorySerializer(serializers.ModelSerializer):
    patterns = serializers.ListField(child=serializers.CharField(max_length=200, allow_blank=True), allow_empty=True, max_length=500)

    class Meta:
        model = PolicyCategory
        fields = ["id", "name", "label", "policy", "enabled", "patterns", "builtin", "updated_at"]
        read_only_fields = ["id", "builtin", "updated_at"]

    def validate_patterns(self, value):
        cleaned = [p.strip() for p in value if p.strip()]
        return list(dict.fromkeys(cleaned))

    def validate_name(self, value):
        if self.instance is not None and self.instance.builtin and value != self.instance.name:
            raise serializers.ValidationError("Built-in categories keep their name.")
        return value


def check_registry_destination(registry: str, *, insecure: bool = False) -> str:
    """The outbound policy on a registry host (updates.registry.check_destination) as a field error."""
    from updates.registry import check_destination

    try:
        check_destination(registry, insecure=insecure)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from None
    return registry


def insecure_given(serializer) -> bool:
    """The request's `insecure` (else the stored one): it decides the registry's default port."""
    data = getattr(serializer, "initial_data", None)
    if isinstance(data, dict) and "insecure" in data:
        return str(data["insecure"]).lower() in ("true", "1", "on", "yes")
    return bool(getattr(serializer.instance, "insecure", False))


class RegistryCredentialSerializer(serializers.ModelSerializer):
    password = serializers.CharField(write_only=True, required=False, allow_blank=True, style={"input_type": "password"})
    has_password = serializers.SerializerMethodField()

    class Meta:
        model = RegistryCredential
        fields = ["id", "registry", "username", "password", "has_password", "ca_cert", "insecure", "note", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_has_password(self, obj) -> bool:
        return bool(obj.password)

    def validate_registry(self, value):
        registry = canonical_registry(value)
        if not registry or any(ch in registry for ch in " @?#"):
            raise serializers.ValidationError("Enter a registry host, e.g. ghcr.io or 127.0.0.1:5000.")
        others = RegistryCredential.objects.filter(registry=registry)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError(f"{registry} already has credentials.")
        return check_registry_destination(registry, insecure=insecure_given(self))

    def validate_ca_cert(self, value):
        return pem_certificates(value, "CA")

    def validate(self, attrs):
        if self.instance is not None and self.instance.password and not attrs.get("password") and self._moves(attrs):
            # The password follows its destination: a new registry, `insecure` or CA needs it
            # given again in the same request (the stored one is never sent there).
            if attrs.get("username", self.instance.username):
                raise serializers.ValidationError({"password": [
                    "The registry, insecure or the CA changed: enter the password again (a stored password is never sent "
                    "to a new destination), or clear the user name."]})
            attrs["password"] = ""
        username = attrs.get("username", self.instance.username if self.instance else "")
        password = attrs.get("password", self.instance.password if self.instance else "")
        if bool(username) != bool(password):
            raise serializers.ValidationError({"password": ["A user name needs a password (or token), and a password a user name."]})
        return attrs

    def _moves(self, attrs) -> bool:
        current = self.instance.destination()
        wanted = (canonical_registry(attrs.get("registry", self.instance.registry)), bool(attrs.get("insecure", self.instance.insecure)),
                  (attrs.get("ca_cert", self.instance.ca_cert) or "").strip())
        return wanted != current

    def update(self, instance, validated_data):
        # A password in the request is the one to use, even when it equals the stored one.
        instance.password_supplied = bool(validated_data.get("password"))
        return super().update(instance, validated_data)


class TrackingSerializer(serializers.ModelSerializer):
    tracking_mode = serializers.ChoiceField(choices=TrackingMode.choices, required=False)

    class Meta:
        model = ContainerUpdate
        fields = ["tracking_mode", "include_prerelease"]


# ---------------------------------------------------------------------------
# Update runs and auto-update (updates.executor / updates.autoupdate)
# ---------------------------------------------------------------------------
class MaintenanceWindowRules:
    """The rules of a maintenance window, for the API and the configuration file alike: a known
    time zone, each weekday once, and a time range with both ends (or neither) that is not empty."""

    def validate_timezone(self, value):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(f"{value!r} is not a time zone (e.g. Europe/Berlin or UTC).") from None
        return value

    def validate_days(self, value):
        return sorted(set(value))

    def validate(self, attrs):
        start, end = attrs.get("start"), attrs.get("end")
        if (start is None) != (end is None):
            raise serializers.ValidationError({"end": ["A window needs both start and end (or neither)."]})
        if start is not None and start == end:
            raise serializers.ValidationError({"end": ["The window must not be empty (start equals end)."]})
        return attrs


class MaintenanceWindowSerializer(MaintenanceWindowRules, serializers.Serializer):
    """When auto-update may run: weekdays (0 = Monday; empty = every day) and a local time range."""

    days = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=6), required=False, max_length=7)
    start = serializers.TimeField(format="%H:%M")
    end = serializers.TimeField(format="%H:%M")
    timezone = serializers.CharField(max_length=64, required=False, default="UTC")


class UpdateRequestSerializer(serializers.Serializer):
    force = serializers.BooleanField(required=False, default=False, help_text="Needed when the policy is warn")
    health_timeout = serializers.IntegerField(required=False, min_value=1, max_value=3600, allow_null=True,
                                              help_text="Seconds the new container has to turn healthy (default: the setting)")


class BulkUpdateSerializer(UpdateRequestSerializer):
    containers = serializers.ListField(child=serializers.CharField(max_length=64), min_length=1, max_length=1000)


class UpdateRunSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(source="pk", read_only=True)
    key = serializers.CharField(read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, allow_null=True)
    host = serializers.UUIDField(source="host_id", read_only=True)

    class Meta:
        from updates.models import UpdateRun

        model = UpdateRun
        fields = [
            "id", "run", "status", "stage", "percent", "log", "error", "old_key", "new_key", "key", "host", "container_name",
            "trigger", "force", "batch", "requested_by", "image", "from_digest", "to_digest", "target_digest", "from_image_id", "to_image_id",
            "backup_name", "was_running", "health_timeout", "dependents", "timings", "created_at", "started_at", "finished_at",
        ]
        read_only_fields = fields


class BulkResultSerializer(serializers.Serializer):
    batch = serializers.CharField()
    runs = UpdateRunSerializer(many=True)
    refused = serializers.ListField(child=serializers.DictField())
