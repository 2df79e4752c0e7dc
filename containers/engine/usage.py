"""Who uses what on an engine: the containers (running or not) behind images, volumes and networks.

One container list call answers all three questions; images, volumes and networks read it to
name their users and to refuse a removal that would break a container.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from containers.engine.errors import ENGINE_FAILURES, EngineError, wrap_error


@dataclass(frozen=True)
class ContainerUse:
    container_id: str
    name: str
    state: str
    image_id: str
    volumes: tuple[str, ...] = ()
    # network name -> {"network_id", "ipv4", "aliases"}
    networks: dict = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.container_id[:12]


class InUse(EngineError):
    """The engine object is used by containers; `users` names them."""

    def __init__(self, message: str, users: list[ContainerUse]):
        super().__init__(message)
        self.users = users


def containers_using(client) -> list[ContainerUse]:
    """Every container of the engine, stopped ones included (they keep their image and volumes)."""
    try:
        items = client.api.containers(all=True)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    uses = []
    for item in items:
        names = item.get("Names") or []
        networks = {}
        for net_name, endpoint in ((item.get("NetworkSettings") or {}).get("Networks") or {}).items():
            endpoint = endpoint or {}
            networks[net_name] = {
                "network_id": endpoint.get("NetworkID") or "",
                "ipv4": endpoint.get("IPAddress") or "",
                "aliases": list(endpoint.get("Aliases") or []),
            }
        uses.append(ContainerUse(
            container_id=item.get("Id") or "",
            name=(names[0] if names else "").lstrip("/"),
            state=item.get("State") or "",
            image_id=item.get("ImageID") or "",
            volumes=tuple(m.get("Name") for m in item.get("Mounts") or () if m.get("Type") == "volume" and m.get("Name")),
            networks=networks,
        ))
    return uses


def describe_users(users: list[ContainerUse]) -> str:
    return ", ".join(f"{u.name} ({u.state})" for u in users)
