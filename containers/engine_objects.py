"""Images, volumes and networks of a host, read live from its engine and changed on request.

Nothing is stored: every list asks the engine. Each function here takes the host and, for a
change, who asked (a request inside an API call, else a user): the caller has checked the
permission; this module audits the change and writes it to the event log. Engine failures
become ObjectError with the HTTP status that fits (503 unreachable, 404 gone, 409 refused).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import UTC, datetime

from accounts import audit
from containers import bus, engine
from containers.choices import EventCategory, Severity
from containers.engine import networks as engine_networks
from containers.engine import usage as engine_usage
from containers.engine import volumes as engine_volumes

logger = logging.getLogger(__name__)


class ObjectError(Exception):
    """A request about an engine object that could not be done; `status` is the HTTP status,
    `users` the containers that hold the object (for a refusal while in use), `field` the input
    field at fault (for a 400)."""

    def __init__(self, message: str, status: int = 409, *, users: list[dict] | None = None, field: str = ""):
        super().__init__(message)
        self.status = status
        self.users = users or []
        self.field = field


@contextmanager
def client_of(host):
    """A client for the host's engine (every call bounded by DOCKMON_ENGINE_TIMEOUT), closed
    after; an engine that cannot be reached is ObjectError 503."""
    try:
        client = engine.client_for_host(host)
    except engine.EngineError as exc:
        raise ObjectError(f"Host {host.name}: {exc}", 503) from exc
    try:
        yield client
    except ObjectError:
        raise
    except engine.EngineError as exc:
        raise ObjectError(f"Host {host.name}: {exc}", 503 if exc.unreachable else 409) from exc
    finally:
        client.close()


def key_of(host, short_id: str) -> str:
    return f"{host.pk}:{short_id}"


def users_of(host, uses: list[engine_usage.ContainerUse]) -> list[dict]:
    return [{"key": key_of(host, use.short_id), "name": use.name, "state": use.state} for use in uses]


def in_use_message(what: str, host, uses) -> str:
    return f"{what} is in use on {host.name} by {engine_usage.describe_users(uses)}."


def epoch_to_datetime(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds else None


def engine_time(text: str) -> datetime | None:
    """An engine timestamp (RFC 3339, any offset, nanoseconds) as an aware UTC datetime."""
    if not text:
        return None
    main, _, rest = text.partition(".")
    offset = ""
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        offset = rest[len(digits):]
        main = f"{main}.{digits[:6]}"
    else:
        main, offset = text[:19], text[19:]
    offset = "+00:00" if offset in ("", "Z") else offset
    try:
        return datetime.fromisoformat(main + offset).astimezone(UTC)
    except ValueError:
        return None


def record(actor, host, action: str, message: str, *, data: dict, ok: bool = True) -> None:
    """Audit one change (folded into the API call's own row when `actor` is its request) and
    write it to the event log for the host."""
    user = getattr(actor, "user", actor)
    audit.record(actor, action, obj=host, changes=data, status=200 if ok else 409)
    who = getattr(user, "username", None) or "DockMon"
    bus.emit(action, category=EventCategory.USER, severity=Severity.INFO if ok else Severity.WARNING, host=host, actor=user,
             message=f"{who}: {message}", data={"host": str(host.pk), **data})


def announce(host_id, event) -> None:
    """An image, volume or network changed on the engine (the monitor saw its event): tell the
    host's viewers as `image.changed`, `volume.changed` or `network.changed` so that their lists
    follow without polling. Not stored: the engine itself is the record of these objects."""
    data = {"action": event.action, "id": event.object_id, "name": event.name or event.object_id}
    if event.container_id:
        data["container"] = f"{host_id}:{event.container_id[:12]}"
    bus.emit(f"{event.type}.changed", category=EventCategory.HOST, host=host_id, persist=False,
             message=f"{event.type} {data['name']}: {event.action}", data=data)


# --- volumes ---------------------------------------------------------------------------------
def _volume_row(host, volume: engine_volumes.VolumeFacts, users: list, sizes: dict) -> dict:
    return {
        "id": key_of(host, volume.name), "host": str(host.pk), "name": volume.name, "driver": volume.driver,
        "mountpoint": volume.mountpoint, "labels": volume.labels, "created": engine_time(volume.created),
        "containers": [key_of(host, use.short_id) for use in users], "users": users_of(host, users), "size": sizes.get(volume.name),
    }


def list_volumes(host, *, with_sizes: bool = False) -> list[dict]:
    with client_of(host) as client:
        volumes = engine_volumes.list_volumes(client)
        uses = engine_usage.containers_using(client)
        sizes = engine_volumes.sizes(client) if with_sizes else {}
    return [_volume_row(host, v, [u for u in uses if v.name in u.volumes], sizes) for v in sorted(volumes, key=lambda v: v.name)]


def create_volume(host, name: str, *, driver: str, labels: dict, actor) -> dict:
    # Guarded by the caller: `deploy` on the host.
    with client_of(host) as client:
        try:
            volume = engine_volumes.create(client, name, driver=driver, labels=labels)
        except engine_volumes.VolumeExists as exc:
            raise ObjectError(str(exc), 400, field="name") from exc
    record(actor, host, "volume.created", f"created volume {name} on {host.name}", data={"name": name, "driver": volume.driver})
    return _volume_row(host, volume, [], {})


def remove_volume(host, name: str, *, actor) -> None:
    # Guarded by the caller: `deploy` on the host.
    with client_of(host) as client:
        try:
            engine_volumes.inspect(client, name)
        except engine_volumes.VolumeGone as exc:
            raise ObjectError(str(exc), 404) from exc
        users = [u for u in engine_usage.containers_using(client) if name in u.volumes]
        if users:
            message = in_use_message(f"Volume {name}", host, users)
            record(actor, host, "volume.remove_refused", message, data={"name": name, "users": [u.name for u in users]}, ok=False)
            raise ObjectError(message, 409, users=users_of(host, users))
        engine_volumes.remove(client, name)
    record(actor, host, "volume.removed", f"removed volume {name} from {host.name}", data={"name": name})


def prune_volumes(host, *, dry_run: bool, labels: list[str], actor) -> dict:
    # Guarded by the caller: `deploy` on the host (a dry run changes nothing but needs it too).
    with client_of(host) as client:
        used = {name for use in engine_usage.containers_using(client) for name in use.volumes}
        candidates = engine_volumes.prune_candidates(client, used, labels=labels)
        sizes = engine_volumes.sizes(client) if candidates else {}
        removed, failed = [], []
        for volume in candidates:
            if dry_run:
                removed.append(volume)
                continue
            try:
                engine_volumes.remove(client, volume.name)
                removed.append(volume)
            except engine.EngineError as exc:
                failed.append({"name": volume.name, "error": str(exc)})
    answer = {
        "dry_run": dry_run,
        "volumes": [{"id": key_of(host, v.name), "name": v.name, "size": sizes.get(v.name)} for v in removed],
        "space_reclaimed": sum(sizes.get(v.name) or 0 for v in removed),
        "failed": failed,
    }
    if not dry_run:
        record(actor, host, "volume.pruned", f"pruned {len(removed)} volumes on {host.name}",
               data={"volumes": [v.name for v in removed], "space_reclaimed": answer["space_reclaimed"], "failed": failed})
    return answer


# --- networks --------------------------------------------------------------------------------
def _network_row(host, network: engine_networks.NetworkFacts, uses: list) -> dict:
    members = []
    for use in uses:
        endpoint = next((e for name, e in use.networks.items() if name == network.name or e["network_id"] == network.network_id), None)
        if endpoint is not None:
            members.append({"key": key_of(host, use.short_id), "name": use.name, "ipv4": endpoint["ipv4"],
                            "aliases": endpoint["aliases"]})
    return {
        "id": key_of(host, network.short_id), "host": str(host.pk), "name": network.name, "driver": network.driver,
        "scope": network.scope, "internal": network.internal, "subnets": list(network.subnets), "gateways": list(network.gateways),
        "labels": network.labels, "created": engine_time(network.created), "containers": members,
    }


def list_networks(host) -> list[dict]:
    with client_of(host) as client:
        networks = engine_networks.list_networks(client)
        uses = engine_usage.containers_using(client)
    return [_network_row(host, n, uses) for n in sorted(networks, key=lambda n: n.name)]


def network_detail(host, short_id: str) -> dict:
    with client_of(host) as client:
        try:
            network = engine_networks.resolve(client, short_id)
        except engine_networks.NetworkGone as exc:
            raise ObjectError(str(exc), 404) from exc
        uses = engine_usage.containers_using(client)
    return _network_row(host, network, uses)


def _refusal(exc: engine_networks.NetworkRefused, field: str = "") -> ObjectError:
    # The engine's 4xx is about the request (a name in use, a bad subnet, a pre-defined network).
    status = 404 if exc.status == 404 else (400 if field else 409)
    return ObjectError(str(exc), status, field=field)


def create_network(host, *, name: str, driver: str, internal: bool, subnet: str, gateway: str, labels: dict, actor) -> dict:
    # Guarded by the caller: `deploy` on the host.
    with client_of(host) as client:
        if any(n.name == name for n in engine_networks.list_networks(client)):
            raise ObjectError(f"A network named {name} exists already on this host.", 400, field="name")
        try:
            network = engine_networks.create(client, name, driver=driver, internal=internal, subnet=subnet, gateway=gateway,
                                             labels=labels)
        except engine_networks.NetworkRefused as exc:
            raise _refusal(exc, "subnet" if subnet and ("subnet" in str(exc).lower() or "pool" in str(exc).lower()) else "name") from exc
    record(actor, host, "network.created", f"created network {name} on {host.name}",
           data={"name": name, "driver": network.driver, "internal": internal, "subnet": subnet})
    return _network_row(host, network, [])


def remove_network(host, short_id: str, *, actor) -> None:
    # Guarded by the caller: `deploy` on the host.
    with client_of(host) as client:
        try:
            network = engine_networks.resolve(client, short_id)
        except engine_networks.NetworkGone as exc:
            raise ObjectError(str(exc), 404) from exc
        uses = [u for u in engine_usage.containers_using(client)
                if u.container_id in network.endpoints or any(e["network_id"] == network.network_id for e in u.networks.values())]
        if uses:
            message = in_use_message(f"Network {network.name}", host, uses)
            record(actor, host, "network.remove_refused", message, data={"name": network.name, "users": [u.name for u in uses]}, ok=False)
            raise ObjectError(message, 409, users=users_of(host, uses))
        try:
            engine_networks.remove(client, network.network_id)
        except engine_networks.NetworkRefused as exc:
            raise _refusal(exc) from exc
    record(actor, host, "network.removed", f"removed network {network.name} from {host.name}", data={"name": network.name})


def change_membership(host, short_id: str, container, *, connect: bool, aliases: list[str], ipv4: str, actor) -> dict:
    """Connect a container (a Container row of this host) to the network, or disconnect it."""
    # Guarded by the caller: `deploy` on the host.
    with client_of(host) as client:
        try:
            network = engine_networks.resolve(client, short_id)
        except engine_networks.NetworkGone as exc:
            raise ObjectError(str(exc), 404) from exc
        try:
            if connect:
                engine_networks.connect(client, network.network_id, container.container_id, aliases=aliases, ipv4=ipv4)
            else:
                engine_networks.disconnect(client, network.network_id, container.container_id)
        except engine_networks.NetworkRefused as exc:
            raise _refusal(exc) from exc
        network = engine_networks.inspect(client, network.network_id)
        uses = engine_usage.containers_using(client)
    verb = "connected" if connect else "disconnected"
    record(actor, host, f"network.{verb}", f"{verb} {container.name} {'to' if connect else 'from'} network {network.name}",
           data={"name": network.name, "key": container.key, "aliases": aliases, "ipv4": ipv4})
    return _network_row(host, network, uses)


# --- a container's inspect document ----------------------------------------------------------
MASKED = "********"


def container_inspect(container, *, reveal_env: bool, actor) -> dict:
    """The engine's inspect document of a container. Environment values are secrets: masked
    (`NAME=********`) unless `reveal_env`, which the caller allows only with `change` on the
    container; a reveal is audited."""
    from containers.engine import recreate as engine_recreate

    with client_of(container.host) as client:
        try:
            document = engine_recreate.inspect_raw(client, container.container_id)
        except engine.ContainerGone as exc:
            raise ObjectError(f"{container.name} no longer exists on {container.host.name}.", 404) from exc
    config = document.get("Config") or {}
    if reveal_env:
        audit.record(actor, "container.env_revealed", obj=container, status=200)
    elif config.get("Env"):
        config["Env"] = [f"{item.partition('=')[0]}={MASKED}" for item in config["Env"]]
    return document
