"""Networks on the engine: list, create, remove, connect and disconnect containers."""

from __future__ import annotations

from dataclasses import dataclass

import docker.errors
import docker.types

from containers.engine.errors import ENGINE_FAILURES, EngineError, wrap_error

# Networks every engine has; they cannot be removed.
PREDEFINED = ("bridge", "host", "none")


@dataclass(frozen=True)
class NetworkFacts:
    network_id: str
    name: str
    driver: str
    scope: str
    internal: bool
    subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    labels: dict
    created: str
    # container id -> {"name", "ipv4"}: the endpoints the engine reports (running containers)
    endpoints: dict

    @property
    def short_id(self) -> str:
        return self.network_id[:12]


class NetworkGone(EngineError):
    """No such network on the engine."""


class NetworkRefused(EngineError):
    """The engine refused a create or a change; `status` is its HTTP status."""

    def __init__(self, message: str, status: int | None):
        super().__init__(message)
        self.status = status


def _facts(item: dict) -> NetworkFacts:
    configs = (item.get("IPAM") or {}).get("Config") or []
    endpoints = {cid: {"name": (info or {}).get("Name") or "", "ipv4": ((info or {}).get("IPv4Address") or "").split("/")[0]}
                 for cid, info in (item.get("Containers") or {}).items()}
    return NetworkFacts(
        network_id=item.get("Id") or "", name=item.get("Name") or "", driver=item.get("Driver") or "",
        scope=item.get("Scope") or "", internal=bool(item.get("Internal")),
        subnets=tuple(c["Subnet"] for c in configs if c.get("Subnet")),
        gateways=tuple(c["Gateway"] for c in configs if c.get("Gateway")),
        labels=dict(item.get("Labels") or {}), created=item.get("Created") or "", endpoints=endpoints,
    )


def _refused(exc: docker.errors.APIError) -> NetworkRefused:
    status = exc.response.status_code if exc.response is not None else None
    return NetworkRefused(f"The engine refused: {exc.explanation or exc}", status)


def list_networks(client) -> list[NetworkFacts]:
    try:
        return [_facts(item) for item in client.api.networks()]
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def resolve(client, short_id: str) -> NetworkFacts:
    """The network whose ID starts with `short_id`, inspected (with its endpoints)."""
    for network in list_networks(client):
        if network.short_id == short_id:
            return inspect(client, network.network_id)
    raise NetworkGone(f"No network {short_id} on the engine.")


def inspect(client, network_id: str) -> NetworkFacts:
    try:
        return _facts(client.api.inspect_network(network_id))
    except docker.errors.NotFound as exc:
        raise NetworkGone(f"No network {network_id} on the engine.") from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def create(client, name: str, *, driver: str = "bridge", internal: bool = False, subnet: str = "", gateway: str = "",
           labels: dict | None = None) -> NetworkFacts:
    ipam = None
    if subnet:
        pool = docker.types.IPAMPool(subnet=subnet, gateway=gateway or None)
        ipam = docker.types.IPAMConfig(pool_configs=[pool])
    try:
        answer = client.api.create_network(name, driver=driver or "bridge", internal=internal, ipam=ipam, labels=labels or None,
                                           check_duplicate=True)
        return inspect(client, answer["Id"])
    except docker.errors.APIError as exc:
        if exc.response is not None and 400 <= exc.response.status_code < 500:
            raise _refused(exc) from exc
        raise wrap_error(exc) from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def remove(client, network_id: str) -> None:
    try:
        client.api.remove_network(network_id)
    except docker.errors.NotFound as exc:
        raise NetworkGone(f"No network {network_id} on the engine.") from exc
    except docker.errors.APIError as exc:
        if exc.response is not None and 400 <= exc.response.status_code < 500:
            raise _refused(exc) from exc
        raise wrap_error(exc) from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def connect(client, network_id: str, container_id: str, *, aliases: list[str] | None = None, ipv4: str = "") -> None:
    try:
        client.api.connect_container_to_network(container_id, network_id, aliases=aliases or None, ipv4_address=ipv4 or None)
    except docker.errors.APIError as exc:
        if exc.response is not None and 400 <= exc.response.status_code < 500:
            raise _refused(exc) from exc
        raise wrap_error(exc) from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def disconnect(client, network_id: str, container_id: str) -> None:
    try:
        client.api.disconnect_container_from_network(container_id, network_id)
    except docker.errors.APIError as exc:
        if exc.response is not None and 400 <= exc.response.status_code < 500:
            raise _refused(exc) from exc
        raise wrap_error(exc) from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
