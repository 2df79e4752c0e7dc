"""Serializers of images, volumes and networks (read live from the engines) and of the
requests that change them."""

from __future__ import annotations

import ipaddress
import re

from rest_framework import serializers

# Docker's own rule for volume and network names.
NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
NETWORK_DRIVERS = ("bridge", "macvlan", "ipvlan", "overlay")
_LABEL_RULE = re.compile(r"^[^=\s]+(=.*)?$")


def _labels(value: dict) -> dict:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise serializers.ValidationError("Labels map names to text.")
    return value


class ListQuerySerializer(serializers.Serializer):
    host = serializers.UUIDField(required=False)


class ImageListQuerySerializer(ListQuerySerializer):
    dangling = serializers.BooleanField(required=False, allow_null=True, default=None)
    search = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class VolumeListQuerySerializer(ListQuerySerializer):
    size = serializers.BooleanField(required=False, default=False, help_text="Ask the engine's disk usage for each volume's size (slower).")


class InspectQuerySerializer(serializers.Serializer):
    reveal_env = serializers.BooleanField(required=False, default=False,
                                          help_text="Show environment values (needs `change` on the container; audited).")


class RemoveImageQuerySerializer(serializers.Serializer):
    force = serializers.BooleanField(required=False, default=False)


class ContainerUserSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    state = serializers.CharField()


class InUseSerializer(serializers.Serializer):
    detail = serializers.CharField()
    containers = ContainerUserSerializer(many=True, required=False, help_text="The containers using it (when that is the reason).")


class ImageSerializer(serializers.Serializer):
    id = serializers.CharField(help_text='"{host id}:{short image id}"')
    host = serializers.UUIDField()
    repo_tags = serializers.ListField(child=serializers.CharField())
    repo_digests = serializers.ListField(child=serializers.CharField())
    size = serializers.IntegerField()
    created = serializers.DateTimeField(allow_null=True)
    containers = serializers.ListField(child=serializers.CharField(), help_text="Keys of the containers that use it.")
    users = ContainerUserSerializer(many=True, help_text="The same containers with their names and states.")
    dangling = serializers.BooleanField()
    update_available = serializers.BooleanField()
    labels = serializers.DictField(child=serializers.CharField())


class ImageLayerSerializer(serializers.Serializer):
    id = serializers.CharField()
    created = serializers.DateTimeField(allow_null=True)
    created_by = serializers.CharField()
    size = serializers.IntegerField()
    comment = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())


class ImageConfigSerializer(serializers.Serializer):
    env = serializers.ListField(child=serializers.CharField())
    cmd = serializers.ListField(child=serializers.CharField(), allow_null=True)
    entrypoint = serializers.ListField(child=serializers.CharField(), allow_null=True)
    exposed_ports = serializers.ListField(child=serializers.CharField())
    labels = serializers.DictField(child=serializers.CharField())
    working_dir = serializers.CharField()
    user = serializers.CharField()


class ImageDetailSerializer(ImageSerializer):
    architecture = serializers.CharField()
    os = serializers.CharField()
    config = ImageConfigSerializer()
    history = ImageLayerSerializer(many=True)


class PullSerializer(serializers.Serializer):
    image = serializers.CharField(max_length=500, help_text="repository[:tag] or repository@sha256:...")

    def validate_image(self, value: str) -> str:
        value = value.strip()
        if not value or any(c.isspace() for c in value) or value.startswith(("-", "/")) or value.endswith((":", "/", "@")):
            raise serializers.ValidationError("Not an image reference (repository[:tag] or repository@digest).")
        return value


class PullAcceptedSerializer(serializers.Serializer):
    host = serializers.UUIDField()
    image = serializers.CharField()
    task = serializers.CharField(allow_null=True)


class PruneSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(default=False)
    labels = serializers.ListField(child=serializers.CharField(max_length=300), required=False, default=list,
                                   help_text='Only objects carrying every label rule ("key" or "key=value"), as docker\'s label filter.')

    def validate_labels(self, value):
        bad = [rule for rule in value if not _LABEL_RULE.match(rule)]
        if bad:
            raise serializers.ValidationError(f"Not a label rule: {', '.join(bad)}")
        return value


class ImagePruneSerializer(PruneSerializer):
    dangling_only = serializers.BooleanField(default=True)


class PrunedImageSerializer(serializers.Serializer):
    id = serializers.CharField()
    repo_tags = serializers.ListField(child=serializers.CharField())
    size = serializers.IntegerField()


class PruneFailureSerializer(serializers.Serializer):
    id = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    error = serializers.CharField()


class ImagePruneResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    images = PrunedImageSerializer(many=True)
    space_reclaimed = serializers.IntegerField()
    failed = PruneFailureSerializer(many=True)


class PrunedVolumeSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)


class VolumePruneResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    volumes = PrunedVolumeSerializer(many=True)
    space_reclaimed = serializers.IntegerField()
    failed = PruneFailureSerializer(many=True)


class VolumeSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True, help_text='"{host id}:{volume name}"')
    host = serializers.UUIDField()
    name = serializers.RegexField(NAME_PATTERN, max_length=200)
    driver = serializers.CharField(required=False, default="local", max_length=100)
    mountpoint = serializers.CharField(read_only=True)
    labels = serializers.DictField(child=serializers.CharField(max_length=1000), required=False, default=dict, validators=[_labels])
    created = serializers.DateTimeField(read_only=True, allow_null=True)
    containers = serializers.ListField(child=serializers.CharField(), read_only=True)
    users = ContainerUserSerializer(many=True, read_only=True)
    size = serializers.IntegerField(read_only=True, allow_null=True)


class NetworkMemberSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    ipv4 = serializers.CharField()
    aliases = serializers.ListField(child=serializers.CharField())


class NetworkSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True, help_text='"{host id}:{short network id}"')
    host = serializers.UUIDField()
    name = serializers.RegexField(NAME_PATTERN, max_length=200)
    # Text, not a choice: listed networks also have the engine's own drivers (host, null...).
    driver = serializers.CharField(default="bridge", max_length=100, help_text="bridge (the default), macvlan, ipvlan or overlay.")
    scope = serializers.CharField(read_only=True)
    internal = serializers.BooleanField(default=False)
    subnet = serializers.CharField(write_only=True, required=False, allow_blank=True, default="")
    gateway = serializers.CharField(write_only=True, required=False, allow_blank=True, default="")
    subnets = serializers.ListField(child=serializers.CharField(), read_only=True)
    gateways = serializers.ListField(child=serializers.CharField(), read_only=True)
    labels = serializers.DictField(child=serializers.CharField(max_length=1000), required=False, default=dict, validators=[_labels])
    created = serializers.DateTimeField(read_only=True, allow_null=True)
    containers = NetworkMemberSerializer(many=True, read_only=True)

    def validate_driver(self, value: str) -> str:
        if value not in NETWORK_DRIVERS:
            raise serializers.ValidationError(f"Choose one of {', '.join(NETWORK_DRIVERS)}.")
        return value

    def validate_subnet(self, value: str) -> str:
        if not value:
            return value
        try:
            return str(ipaddress.ip_network(value.strip(), strict=True))
        except ValueError as exc:
            raise serializers.ValidationError(f"Not a subnet in CIDR form (e.g. 198.18.0.0/24): {exc}") from None

    def validate(self, attrs):
        gateway, subnet = attrs.get("gateway", ""), attrs.get("subnet", "")
        if gateway:
            if not subnet:
                raise serializers.ValidationError({"gateway": ["A gateway needs a subnet."]})
            try:
                address = ipaddress.ip_address(gateway.strip())
            except ValueError:
                raise serializers.ValidationError({"gateway": ["Not an IP address."]}) from None
            if address not in ipaddress.ip_network(subnet):
                raise serializers.ValidationError({"gateway": [f"{address} is not in {subnet}."]})
            attrs["gateway"] = str(address)
        return attrs


class MembershipSerializer(serializers.Serializer):
    container = serializers.RegexField(r"^[0-9a-fA-F-]{36}:[0-9a-f]{12}$", help_text="The container's key (same host as the network).")
    aliases = serializers.ListField(child=serializers.RegexField(NAME_PATTERN, max_length=200), required=False, default=list)
    ipv4 = serializers.IPAddressField(protocol="IPv4", required=False, allow_blank=True, default="")


class EngineListSerializer(serializers.Serializer):
    """A live list: `count` and `results`, and the hosts whose engine could not answer."""

    count = serializers.IntegerField()
    results = serializers.ListField(child=serializers.DictField())
    errors = serializers.ListField(child=serializers.DictField())


_PORT_KEY = re.compile(r"^\d{1,5}/(tcp|udp|sctp)$")
_HOST_PORT = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}:)?\d{1,5}$")


class ContainerCreateSerializer(serializers.Serializer):
    """POST /containers/: the shapes of design.md ("Engine objects")."""

    host = serializers.UUIDField()
    name = serializers.RegexField(NAME_PATTERN, max_length=200)
    image = serializers.CharField(max_length=500)
    command = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    entrypoint = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    env = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)
    ports = serializers.DictField(child=serializers.JSONField(allow_null=True), required=False, default=dict,
                                  help_text='{"8080/tcp": 8080 | "127.0.0.1:8080" | null}')
    volumes = serializers.DictField(child=serializers.CharField(), required=False, default=dict,
                                    help_text='{"<volume name or /host/path>": "/container/path" | "/container/path:ro"}')
    networks = serializers.JSONField(required=False, default=list, help_text="[name] or {name: {aliases?, ipv4?}}")
    restart_policy = serializers.RegexField(r"^(no|always|unless-stopped|on-failure(:\d+)?)$", required=False, default="")
    labels = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)
    start = serializers.BooleanField(default=True)

    def validate_image(self, value):
        return PullSerializer().validate_image(value)

    def validate_ports(self, value):
        for key, target in value.items():
            if not _PORT_KEY.match(key):
                raise serializers.ValidationError(f"{key}: write the container port as 8080/tcp.")
            if not (target is None or (isinstance(target, int) and 0 < target < 65536)
                    or (isinstance(target, str) and _HOST_PORT.match(target))):
                raise serializers.ValidationError(f"{key}: a host port, \"address:port\" or null.")
        return value

    def validate_volumes(self, value):
        for source, target in value.items():
            path, _, mode = target.partition(":")
            if not path.startswith("/") or mode not in ("", "ro", "rw"):
                raise serializers.ValidationError(f"{source}: mount at an absolute path, optionally with :ro.")
            if not source.startswith("/") and not re.match(NAME_PATTERN, source):
                raise serializers.ValidationError(f"{source}: a volume name or an absolute host path.")
        return value

    def validate_networks(self, value):
        if isinstance(value, list) and all(isinstance(n, str) for n in value):
            value = {n: {} for n in value}
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise serializers.ValidationError("A list of names or {name: {aliases, ipv4}}.")
        for name, endpoint in value.items():
            if set(endpoint) - {"aliases", "ipv4"}:
                raise serializers.ValidationError(f"{name}: only aliases and ipv4.")
            if "ipv4" in endpoint:
                try:
                    ipaddress.IPv4Address(endpoint["ipv4"])
                except ValueError:
                    raise serializers.ValidationError(f"{name}: {endpoint['ipv4']} is not an IPv4 address.") from None
        return value


class ContainerCreatedSerializer(serializers.Serializer):
    key = serializers.CharField()


class ContainerChangesSerializer(ContainerCreateSerializer):
    """The fields of a creation, all optional; env and labels values may be null (removed)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("host", "name", "start"):
            self.fields.pop(name)
        for field in self.fields.values():
            field.required = False
            field.default = serializers.empty
        for name in ("env", "labels"):
            self.fields[name] = serializers.DictField(child=serializers.CharField(allow_blank=True, allow_null=True), required=False)


class DuplicateSerializer(serializers.Serializer):
    name = serializers.RegexField(NAME_PATTERN, max_length=200)
    changes = ContainerChangesSerializer(required=False, default=dict)
    start = serializers.BooleanField(default=True)
