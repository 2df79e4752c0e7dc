from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from rest_framework import serializers

from containers import engine
from containers.models import Container, DockerHost, Event


def _check_certificate(value: str, label: str) -> str:
    value = (value or "").strip()
    if not value:
        return ""
    try:
        certs = x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise serializers.ValidationError(f"This is not a PEM {label} certificate.") from None
    if not certs:
        raise serializers.ValidationError(f"This is not a PEM {label} certificate.")
    return value + "\n"


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
        return _check_certificate(value, "CA")

    def validate_tls_cert(self, value):
        return _check_certificate(value, "client")

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
        return attrs


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

    class Meta:
        model = Container
        fields = [
            "key", "host", "host_name", "short_id", "container_id", "name", "image", "image_id", "command", "state",
            "status", "health", "exit_code", "restart_count", "labels", "ports", "tags", "compose_project",
            "compose_service", "created_at", "started_at", "finished_at", "removed_at", "replaced_by",
            "first_seen_at", "update_available",
        ]
        read_only_fields = fields

    def get_tags(self, obj) -> list[str]:
        return sorted(tag.name for tag in obj.tags.all())

    def get_update_available(self, obj) -> bool:
        # Filled in by the updates app's annotation once an update check has run.
        return bool(getattr(obj, "update_available", False))


class EventSerializer(serializers.ModelSerializer):
    container = serializers.CharField(source="container_key", read_only=True)
    host = serializers.UUIDField(source="host_id", read_only=True, allow_null=True)
    actor = serializers.CharField(source="actor.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Event
        fields = ["id", "ts", "category", "type", "severity", "host", "container", "container_name", "message", "data", "actor"]
        read_only_fields = fields
