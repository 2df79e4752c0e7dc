from __future__ import annotations

from datetime import UTC

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from containers import engine, host_rules
from containers.choices import BulkItemStatus
from containers.models import BulkJob, BulkJobItem, Container, DockerHost, Event
from containers.permissions import ACTIONS
from dockmon_site.api import pem_certificates


class HostSerializer(serializers.ModelSerializer):
    tls_ca = serializers.CharField(write_only=True, required=False, allow_blank=True, style={"base_template": "textarea.html"})
    tls_cert = serializers.CharField(write_only=True, required=False, allow_blank=True, style={"base_template": "textarea.html"})
    tls_key = serializers.CharField(write_only=True, required=False, allow_blank=True, style={"base_template": "textarea.html"})
    uses_tls = serializers.BooleanField(read_only=True)
    container_count = serializers.SerializerMethodField()

    class Meta:
        model = DockerHost
        fields = [
            "id", "name", "url", "tls_ca", "tls_cert", "tls_key", "uses_tls", "enabled", "status", "last_error",
            "engine_version", "api_version", "engine_id", "engine_name", "os", "last_seen_at", "status_changed_at",
            "container_count", "created_at", "updated_at",
        ]
        read_only_fields = [
            "status", "last_error", "engine_version", "api_version", "engine_id", "engine_name", "os",
            "last_seen_at", "status_changed_at", "created_at", "updated_at",
        ]

    def get_container_count(self, obj) -> int:
        count = getattr(obj, "container_count", None)
        if count is None:
            count = obj.containers.filter(removed_at__isnull=True).count()
        return count

    def validate_name(self, value):
        value = value.strip()
        if not value:
            raise serializers.ValidationError("Enter a name.")
        return value

    def validate_tls_ca(self, value):
        return pem_certificates(value, "CA")

    def validate_tls_cert(self, value):
        return pem_certificates(value, "client")

    def validate_tls_key(self, value):
        value = (value or "").strip()
        if not value:
            return ""
        try:
            load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError):
            raise serializers.ValidationError("This is not an unencrypted PEM private key.") from None
        return value + "\n"

    def validate(self, attrs):
        instance = self.instance
        ca = attrs.get("tls_ca", instance.tls_ca if instance else "")
        cert = attrs.get("tls_cert", instance.tls_cert if instance else "")
        key = attrs.get("tls_key", instance.tls_key if instance else "")
        if bool(cert) != bool(key):
            raise serializers.ValidationError({"tls_key": ["A client certificate needs its key, and a key its certificate."]})
        url = attrs.get("url", instance.url if instance else "")
        try:
            attrs["url"] = engine.normalize_url(url, tls=bool(ca or cert))
        except ValueError as exc:
            raise serializers.ValidationError({"url": [str(exc)]}) from None
        if (ca or cert) and not attrs["url"].startswith("tcp://"):
            raise serializers.ValidationError({"url": ["TLS certificates apply only to tcp:// URLs."]})
        if instance is None or attrs["url"] != instance.url:
            # One host per engine: a second host on a registered engine would come with a fresh
            # set of grants on its containers (containers/host_rules.py).
            other = host_rules.same_endpoint(attrs["url"], exclude_pk=instance.pk if instance else None)
            if other is not None:
                raise serializers.ValidationError({"url": [host_rules.duplicate_message(other, self._user())]})
        return attrs

    def _user(self):
        request = self.context.get("request")
        return self.context.get("user") or getattr(request, "user", None)


class HostTestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    status = serializers.CharField()
    error = serializers.CharField(allow_blank=True)
    elapsed_ms = serializers.IntegerField()
    engine_version = serializers.CharField(allow_blank=True)
    api_version = serializers.CharField(allow_blank=True)
    engine_name = serializers.CharField(allow_blank=True)
    os = serializers.CharField(allow_blank=True)
    containers = serializers.IntegerField(allow_null=True)


class ContainerSerializer(serializers.ModelSerializer):
    host = serializers.UUIDField(source="host_id", read_only=True)
    host_name = serializers.CharField(source="host.name", read_only=True)
    tags = serializers.SerializerMethodField()
    update_available = serializers.SerializerMethodField()
    stack = serializers.SerializerMethodField(help_text="The id of the compose stack the container belongs to, if any")

    class Meta:
        model = Container
        fields = [
            "key", "host", "host_name", "short_id", "container_id", "name", "image", "image_id", "command", "state",
            "status", "health", "exit_code", "restart_count", "labels", "ports", "mounts", "networks", "tags", "compose_project",
            "compose_service", "created_at", "started_at", "finished_at", "removed_at", "replaced_by",
            "first_seen_at", "desired_state", "update_available", "stack",
        ]
        read_only_fields = fields

    def get_tags(self, obj) -> list[str]:
        tags = getattr(obj, "tag_list", None)  # prefetched as a list by the list view
        return sorted(tag.name for tag in (tags if tags is not None else obj.tags.all()))

    def get_update_available(self, obj) -> bool:
        # Filled in by the updates app's annotation once an update check has run.
        return bool(getattr(obj, "update_available", False))

    def get_stack(self, obj) -> int | None:
        # Filled in by the stacks app's annotation (False when that app is not installed).
        return getattr(obj, "stack", None) or None

    def to_representation(self, obj):
        """The same output as the declared fields, built directly: the list endpoint serialises
        hundreds of rows per page and DRF's per-field machinery was most of its time."""
        return {
            "key": obj.key, "host": str(obj.host_id), "host_name": _host_name(obj), "short_id": obj.short_id,
            "container_id": obj.container_id, "name": obj.name, "image": obj.image, "image_id": obj.image_id,
            "command": obj.command, "state": obj.state, "status": obj.status, "health": obj.health,
            "exit_code": obj.exit_code, "restart_count": obj.restart_count, "labels": obj.labels, "ports": obj.ports,
            "mounts": obj.mounts, "networks": obj.networks, "tags": self.get_tags(obj),
            "compose_project": obj.compose_project, "compose_service": obj.compose_service,
            "created_at": _iso(obj.created_at), "started_at": _iso(obj.started_at), "finished_at": _iso(obj.finished_at),
            "removed_at": _iso(obj.removed_at), "replaced_by": obj.replaced_by, "first_seen_at": _iso(obj.first_seen_at),
            "desired_state": obj.desired_state, "update_available": self.get_update_available(obj),
            "stack": self.get_stack(obj),
        }


def _host_name(obj) -> str:
    # The list view annotates the name (no host object per row); elsewhere the host is loaded.
    name = obj.__dict__.get("host_name")
    return name if name is not None else obj.host.name


def _iso(value) -> str | None:
    """DRF's DateTimeField output: ISO 8601 in UTC with a Z."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class EventSerializer(serializers.ModelSerializer):
    container = serializers.CharField(source="container_key", read_only=True)
    host = serializers.UUIDField(source="host_id", read_only=True, allow_null=True)
    actor = serializers.CharField(source="actor.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Event
        fields = ["id", "ts", "category", "type", "severity", "host", "container", "container_name", "message", "data", "actor"]
        read_only_fields = fields


DOCKER_NAME = r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$"


class StopOptionsSerializer(serializers.Serializer):
    timeout = serializers.IntegerField(required=False, min_value=0, max_value=600, help_text="Seconds before the engine kills it")


class KillOptionsSerializer(serializers.Serializer):
    signal = serializers.RegexField(r"^(SIG)?[A-Z0-9]{2,10}$|^\d{1,2}$", required=False, help_text="e.g. SIGTERM, HUP or 9")


class RenameSerializer(serializers.Serializer):
    name = serializers.RegexField(DOCKER_NAME, max_length=255, error_messages={"invalid": "Use letters, digits, '_', '.' and '-' (starting with a letter or digit)."})


class RemoveOptionsSerializer(serializers.Serializer):
    force = serializers.BooleanField(required=False, default=False)
    volumes = serializers.BooleanField(required=False, default=False)


class BulkOperationSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["start", "stop", "restart", "kill", "pause", "unpause", "remove"])
    keys = serializers.ListField(child=serializers.RegexField(r"^[0-9a-fA-F-]{36}:[0-9a-f]{12}$"), min_length=1, max_length=1000)
    force = serializers.BooleanField(required=False, default=False)
    volumes = serializers.BooleanField(required=False, default=False)
    timeout = serializers.IntegerField(required=False, min_value=0, max_value=600)


class BulkResultSerializer(serializers.Serializer):
    key = serializers.CharField()
    ok = serializers.BooleanField()
    state = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)
    status = serializers.IntegerField()


class LogsQuerySerializer(serializers.Serializer):
    tail = serializers.IntegerField(required=False, min_value=1, max_value=100_000, default=100)
    since = serializers.DateTimeField(required=False)
    download = serializers.BooleanField(
        required=False, default=False,
        help_text="Return a plain-text file, streamed (lines up to 1 MiB); beyond DOCKMON_LOGS_DOWNLOAD_MAX_BYTES it ends with a "
                  "line saying it was cut",
    )


class LogLineSerializer(serializers.Serializer):
    ts = serializers.DateTimeField(allow_null=True)
    stream = serializers.CharField()
    text = serializers.CharField(allow_blank=True)


class LogsSerializer(serializers.Serializer):
    lines = LogLineSerializer(many=True)
    truncated = serializers.BooleanField(help_text="Older lines were left out: the answer holds at most DOCKMON_LOGS_MAX_BYTES of text")


class StatsQuerySerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=["1h", "24h", "7d", "30d"], required=False, default="1h")


class StatsPointSerializer(serializers.Serializer):
    t = serializers.DateTimeField()
    cpu_percent = serializers.FloatField()
    cpu_min = serializers.FloatField()
    cpu_max = serializers.FloatField()
    mem_bytes = serializers.IntegerField()
    mem_min = serializers.IntegerField()
    mem_max = serializers.IntegerField()
    mem_limit = serializers.IntegerField()
    net_rx = serializers.IntegerField()
    net_tx = serializers.IntegerField()
    blk_read = serializers.IntegerField()
    blk_write = serializers.IntegerField()
    pids = serializers.IntegerField()
    samples = serializers.IntegerField()


class StatsSerializer(serializers.Serializer):
    range = serializers.CharField()
    points = StatsPointSerializer(many=True)


class DiskUsageSerializer(serializers.ModelSerializer):
    total_size = serializers.IntegerField(read_only=True)

    class Meta:
        from containers.models import DiskUsage

        model = DiskUsage
        exclude = ["id", "host"]


class ProfileSessionSerializer(serializers.ModelSerializer):
    container = serializers.CharField(source="container_key", read_only=True)
    user = serializers.CharField(source="user.username", read_only=True, allow_null=True, default=None)

    class Meta:
        from containers.models import ProfileSession

        model = ProfileSession
        fields = ["id", "container", "container_name", "host", "user", "started_at", "ended_at", "end_reason", "sample_count"]
        read_only_fields = fields


class ProfileSessionDetailSerializer(ProfileSessionSerializer):
    class Meta(ProfileSessionSerializer.Meta):
        fields = [*ProfileSessionSerializer.Meta.fields, "samples"]
        read_only_fields = fields


# ---------------------------------------------------------------------------
# Bulk jobs and profile sessions
# ---------------------------------------------------------------------------
class LimitSerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=50)


class BulkRequestSerializer(BulkOperationSerializer):
    background = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="Run in a worker (202) or inside the request (200); default: by the selection's size",
    )


class BulkJobItemSerializer(serializers.ModelSerializer):
    status = serializers.IntegerField(source="http_status", allow_null=True, read_only=True,
                                      help_text="What a single call would have answered (200, 403, 404, 409, 503...); null while pending")
    done = serializers.SerializerMethodField()

    class Meta:
        model = BulkJobItem
        fields = ["key", "ok", "state", "error", "status", "done"]
        read_only_fields = fields

    def get_done(self, obj) -> bool:
        return obj.status != BulkItemStatus.PENDING


class BulkJobSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True, allow_null=True, default=None)
    done = serializers.IntegerField(read_only=True, help_text="Items finished so far")

    class Meta:
        model = BulkJob
        fields = ["id", "action", "options", "status", "background", "total", "done", "succeeded", "failed", "error",
                  "user", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class BulkJobDetailSerializer(BulkJobSerializer):
    results = BulkJobItemSerializer(source="item_list", many=True, read_only=True, help_text="In the order the keys were given")

    class Meta(BulkJobSerializer.Meta):
        fields = [*BulkJobSerializer.Meta.fields, "results"]
        read_only_fields = fields


class ProfileSamplesQuerySerializer(serializers.Serializer):
    offset = serializers.IntegerField(required=False, min_value=0, default=0)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100_000, default=3600)


# ---------------------------------------------------------------------------
# Object-permission grants
# ---------------------------------------------------------------------------
def _exactly_one(attrs: dict, errors: dict, into: str, choices) -> None:
    """Exactly one of two fields given (a user or a group; a host or a container): the object
    it names goes into attrs[into], what went wrong into `errors`. `choices` holds two
    (field, model, message when there is no such object)."""
    (first, _, _), (second, _, _) = choices
    given = [(name, model, missing) for name, model, missing in choices if attrs.get(name) is not None]
    if len(given) != 1:
        message = f"Give either a {first} or a {second}." if not given else f"Give a {first} or a {second}, not both."
        errors[first] = errors[second] = [message]
        return
    name, model, missing = given[0]
    attrs[into] = model.objects.filter(pk=attrs[name]).first()
    if attrs[into] is None:
        errors[name] = [missing.format(attrs[name])]


class GrantSerializer(serializers.Serializer):
    id = serializers.RegexField(r"^[ug][0-9]+$", read_only=True, help_text='"u<n>" for a user\'s grant, "g<n>" for a group\'s')
    user = serializers.IntegerField(required=False, allow_null=True, help_text="User id (or give group)")
    username = serializers.CharField(read_only=True)
    group = serializers.IntegerField(required=False, allow_null=True, help_text="Group id (or give user)")
    group_name = serializers.CharField(read_only=True)
    host = serializers.UUIDField(required=False, allow_null=True, help_text="Host id (or give container)")
    container = serializers.CharField(required=False, allow_null=True, allow_blank=False, max_length=64, help_text="Container key (or give host)")
    permission = serializers.ChoiceField(choices=list(ACTIONS) + ["delete", "deploy"],
                                         help_text="view, operate, update or change; deploy (compose stacks) on a host only")
    object_repr = serializers.CharField(read_only=True)

    def to_representation(self, grant):
        return {
            "id": grant.id,
            "user": grant.user_id,
            "username": grant.username,
            "group": grant.group_id,
            "group_name": grant.group_name,
            "host": grant.host_id,
            "container": grant.container_key,
            "permission": grant.permission,
            "object_repr": grant.object_repr,
        }

    def validate_permission(self, value):
        if value not in (*ACTIONS, "deploy"):
            raise serializers.ValidationError(f"Choose one of: {', '.join((*ACTIONS, 'deploy'))}.")
        return value

    def validate(self, attrs):
        errors: dict[str, list[str]] = {}
        _exactly_one(attrs, errors, "principal",
                     (("user", get_user_model(), "No user with id {}."), ("group", Group, "No group with id {}.")))
        _exactly_one(attrs, errors, "target",
                     (("host", DockerHost, "No host with id {}."), ("container", Container, "No container with key {!r}.")))
        if attrs.get("permission") == "deploy" and attrs.get("container"):
            errors["permission"] = ["deploy is a right on a host (compose stacks), not on a container."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs
