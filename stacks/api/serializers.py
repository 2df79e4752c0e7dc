from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from containers.models import DockerHost
from containers.permissions import has_host_perm, visible_hosts
from stacks import services
from stacks.choices import StackSource, StackStatus
from stacks.models import Stack, StackRun


class ServiceSerializer(serializers.Serializer):
    name = serializers.CharField()
    image = serializers.CharField()
    containers = serializers.ListField(child=serializers.CharField(), help_text="Container keys")
    state = serializers.CharField(help_text="running, partial, exited, missing...")


class DriftSerializer(serializers.Serializer):
    service = serializers.CharField()
    reason = serializers.ChoiceField(choices=["missing", "changed", "extra"])
    container = serializers.CharField(required=False)
    message = serializers.CharField()


class OriginSerializer(serializers.Serializer):
    working_dir = serializers.CharField()
    config_files = serializers.ListField(child=serializers.CharField())
    environment_files = serializers.ListField(child=serializers.CharField())


class VisibleHostField(serializers.PrimaryKeyRelatedField):
    """A host the caller may view; any other id is "does not exist" (nothing leaks about it)."""

    def get_queryset(self):
        request = self.context.get("request")
        return visible_hosts(request.user) if request is not None else DockerHost.objects.none()


class StackSerializer(serializers.ModelSerializer):
    host = VisibleHostField(help_text="The host the stack runs on (cannot change)")
    status = serializers.SerializerMethodField()
    services = serializers.SerializerMethodField()
    drift = serializers.SerializerMethodField()
    last_run = serializers.SerializerMethodField()
    origin = serializers.SerializerMethodField(help_text="Where compose says the project came from (its labels)")

    class Meta:
        model = Stack
        fields = ["id", "name", "host", "compose", "env", "auto_update", "source", "status", "services", "drift", "origin", "last_run",
                  "deployed_at", "created_at", "updated_at"]
        read_only_fields = ["source", "deployed_at", "created_at", "updated_at"]
        # The files are kept exactly as written (a dotenv file's last newline included).
        extra_kwargs = {"compose": {"trim_whitespace": False}, "env": {"trim_whitespace": False}}
        # Names are checked by services.check_name, which says why in the `name` field.
        validators = []

    def to_representation(self, stack):
        data = super().to_representation(stack)
        request = self.context.get("request")
        # The env file's values are for holders of `deploy` on the host (who could read them
        # from a container they deploy anyway); others see the names only.
        if data.get("env") and (request is None or not has_host_perm(request.user, "deploy", stack.host)):
            data["env"] = services.masked_env(data["env"])
        return data

    def _standing(self, stack: Stack) -> services.Standing:
        cached = getattr(stack, "_standing", None)
        if cached is None:
            cached = stack._standing = services.standing(stack)
        return cached

    @extend_schema_field(serializers.ChoiceField(choices=StackStatus.choices))
    def get_status(self, stack) -> str:
        return self._standing(stack).status

    @extend_schema_field(ServiceSerializer(many=True))
    def get_services(self, stack) -> list[dict]:
        return ServiceSerializer(self._standing(stack).services, many=True).data

    @extend_schema_field(DriftSerializer(many=True))
    def get_drift(self, stack) -> list[dict]:
        return DriftSerializer(self._standing(stack).drift, many=True).data

    @extend_schema_field(OriginSerializer)
    def get_origin(self, stack) -> dict:
        return OriginSerializer(self._standing(stack).origin).data

    def get_last_run(self, stack) -> int | None:
        if hasattr(stack, "_last_run_id"):  # a list page (services.attach_standings)
            return stack._last_run_id
        run = stack.runs.order_by("-created_at", "-id").first()
        return run.pk if run else None

    def validate_host(self, host):
        # Creating a stack needs `deploy` on its host (checked before compose sees the text).
        request = self.context.get("request")
        if self.instance is None and (request is None or not has_host_perm(request.user, "deploy", host)):
            raise PermissionDenied(f"You may not deploy stacks on {host.name}.")
        return host

    def validate(self, attrs):
        instance = self.instance
        if instance is not None and instance.source == StackSource.EXTERNAL:
            raise serializers.ValidationError("This stack runs outside DockMon: adopt it before editing it.")
        if instance is not None:
            if "host" in attrs and attrs["host"] != instance.host:
                raise serializers.ValidationError({"host": ["A stack cannot move to another host."]})
            if "name" in attrs and attrs["name"] != instance.name:
                raise serializers.ValidationError({"name": ["A stack cannot be renamed (it is the compose project name)."]})
        host = attrs.get("host") or instance.host
        name = attrs.get("name") or instance.name
        compose_text = attrs.get("compose", instance.compose if instance else "")
        env_text = attrs.get("env", instance.env if instance else "")
        try:
            if instance is None:
                services.check_name(host, name)
            attrs["_config"] = services.validate(host, name, compose_text, env_text)
        except services.StackInvalid as exc:
            field = "name" if isinstance(exc, services.NameInvalid) else "compose"
            raise serializers.ValidationError({field: [str(exc)]}) from None
        return attrs

    def save(self, **kwargs):
        result = self.validated_data.pop("_config")
        self.validated_data["config"] = services.stored_config(result.config)
        self.validated_data["config_hashes"] = result.hashes
        return super().save(**kwargs)


class StackRunSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(source="pk", read_only=True)
    host = serializers.UUIDField(source="host_id", read_only=True)
    actor = serializers.CharField(source="actor.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = StackRun
        fields = ["id", "run", "stack", "stack_name", "host", "kind", "status", "stage", "percent", "options", "diff",
                  "error", "log", "actor", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class DownSerializer(serializers.Serializer):
    volumes = serializers.BooleanField(required=False, default=False, help_text="Remove the stack's named volumes too")


class DiffRowSerializer(serializers.Serializer):
    service = serializers.CharField()
    change = serializers.ChoiceField(choices=["unchanged", "new", "removed", "image", "config"])
    image = serializers.CharField(help_text="The image in the file")
    running_image = serializers.CharField(help_text="The image its containers run")
    containers = serializers.ListField(child=serializers.CharField())
