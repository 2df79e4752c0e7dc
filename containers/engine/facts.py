"""What the engine says about containers (inspect, list, events), as ContainerFacts and EngineEvents.

Everything returned is plain data; only the event stream itself is an SDK object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from containers.engine.errors import ENGINE_FAILURES, wrap_error

_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_EXIT_IN_STATUS = re.compile(r"Exited \((-?\d+)\)")
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class ContainerFacts:
    container_id: str
    name: str
    image: str = ""
    image_id: str = ""
    command: str = ""
    state: str = "created"
    status: str = ""
    health: str = "none"
    exit_code: int | None = None
    restart_count: int = 0
    labels: dict = field(default_factory=dict)
    ports: list = field(default_factory=list)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    mounts: list = field(default_factory=list)
    networks: list = field(default_factory=list)
    # True when the facts come from a full inspect (started_at etc. are then meaningful).
    complete: bool = True


@dataclass(frozen=True)
class EngineEvent:
    container_id: str
    action: str
    name: str
    time_nano: int
    attributes: dict


def parse_time(value) -> datetime | None:
    """Engine timestamps (RFC 3339 with nanoseconds and any offset, or epoch seconds) → aware UTC."""
    if value in (None, "", _ZERO_TIME, 0):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    text = str(value).strip()
    if text.startswith("0001-01-01"):
        return None
    match = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$", text)
    if not match:
        return None
    base, fraction, offset = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    offset = offset or "Z"
    if offset == "Z":
        offset = "+00:00"
    elif ":" not in offset:
        offset = offset[:3] + ":" + offset[3:]
    return datetime.fromisoformat(f"{base}.{micro}{offset}").astimezone(UTC)


def _humanize(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = seconds // 60
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = minutes // 60
    if hours < 48:
        return "About an hour" if hours == 1 else f"{hours} hours"
    days = hours // 24
    if days < 14:
        return f"{days} days"
    if days < 60:
        return f"{days // 7} weeks"
    if days < 730:
        return f"{days // 30} months"
    return f"{days // 365} years"


def _status_text(state: str, health: str, exit_code, started_at, finished_at) -> str:
    now = datetime.now(UTC)
    if state == "running" or state == "paused":
        text = "Up " + _humanize((now - started_at).total_seconds()) if started_at else "Up"
        if health in ("healthy", "unhealthy"):
            text += f" ({health})"
        elif health == "starting":
            text += " (health: starting)"
        if state == "paused":
            text += " (Paused)"
        return text
    if state == "exited":
        ago = f" {_humanize((now - finished_at).total_seconds())} ago" if finished_at else ""
        return f"Exited ({exit_code if exit_code is not None else 0}){ago}"
    return state.capitalize()


def _ports_from_inspect(port_map: dict | None) -> list[dict]:
    ports = []
    for spec, bindings in sorted((port_map or {}).items()):
        private, _, proto = spec.partition("/")
        if not bindings:
            ports.append({"private_port": int(private), "type": proto or "tcp", "public_port": None, "ip": ""})
            continue
        for binding in bindings:
            public = binding.get("HostPort")
            ports.append(
                {
                    "private_port": int(private),
                    "type": proto or "tcp",
                    "public_port": int(public) if public else None,
                    "ip": binding.get("HostIp", ""),
                }
            )
    return ports


def _ports_from_summary(port_list: list | None) -> list[dict]:
    ports = [
        {
            "private_port": p.get("PrivatePort"),
            "type": p.get("Type", "tcp"),
            "public_port": p.get("PublicPort"),
            "ip": p.get("IP", ""),
        }
        for p in port_list or []
    ]
    return sorted(ports, key=lambda p: (p["private_port"] or 0, p["type"], p["ip"] or ""))


def facts_from_inspect(data: dict) -> ContainerFacts:
    state = data.get("State") or {}
    config = data.get("Config") or {}
    status = state.get("Status") or "created"
    health = ((state.get("Health") or {}).get("Status") or "none").lower()
    started_at = parse_time(state.get("StartedAt"))
    finished_at = parse_time(state.get("FinishedAt"))
    exit_code = state.get("ExitCode")
    cmd = config.get("Cmd") or []
    entrypoint = config.get("Entrypoint") or []
    return ContainerFacts(
        container_id=data["Id"],
        name=(data.get("Name") or "").lstrip("/"),
        image=config.get("Image") or "",
        image_id=data.get("Image") or "",
        command=" ".join([*entrypoint, *cmd]) if isinstance(cmd, list) else str(cmd),
        state=status,
        status=_status_text(status, health, exit_code, started_at, finished_at),
        health=health if health in ("starting", "healthy", "unhealthy") else "none",
        exit_code=exit_code if status in ("exited", "dead") else None,
        restart_count=int(data.get("RestartCount") or 0),
        labels=config.get("Labels") or {},
        ports=_ports_from_inspect((data.get("NetworkSettings") or {}).get("Ports")),
        created_at=parse_time(data.get("Created")),
        started_at=started_at,
        finished_at=finished_at,
        mounts=[
            {
                "type": m.get("Type", ""), "name": m.get("Name", ""), "source": m.get("Source", ""),
                "destination": m.get("Destination", ""), "mode": m.get("Mode", ""), "rw": bool(m.get("RW")),
            }
            for m in data.get("Mounts") or []
        ],
        networks=sorted(((data.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        or ([network_mode] if (network_mode := (data.get("HostConfig") or {}).get("NetworkMode")) else []),
    )


def facts_from_summary(item: dict) -> ContainerFacts:
    status = item.get("Status") or ""
    health_match = _HEALTH_IN_STATUS.search(status)
    health = "none"
    if health_match:
        health = "starting" if health_match.group(1) == "health: starting" else health_match.group(1)
    exit_match = _EXIT_IN_STATUS.search(status)
    names = item.get("Names") or []
    return ContainerFacts(
        container_id=item["Id"],
        name=(names[0] if names else "").lstrip("/"),
        image=item.get("Image") or "",
        image_id=item.get("ImageID") or "",
        command=item.get("Command") or "",
        state=item.get("State") or "created",
        status=status,
        health=health,
        exit_code=int(exit_match.group(1)) if exit_match else None,
        labels=item.get("Labels") or {},
        ports=_ports_from_summary(item.get("Ports")),
        created_at=parse_time(item.get("Created")),
        complete=False,
    )


def list_containers(client) -> list[ContainerFacts]:
    """Every container on the engine (running or not), from one list call."""
    try:
        items = client.api.containers(all=True)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    return [facts_from_summary(item) for item in items]


def inspect_container(client, container_id: str) -> ContainerFacts:
    try:
        data = client.api.inspect_container(container_id)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    return facts_from_inspect(data)


# Engine objects whose changes are announced (the Images, Volumes and Networks lists follow
# them), and the actions that change what those lists show (a volume's mount/unmount at every
# container start does not).
OBJECT_ACTIONS = {
    "image": {"pull", "import", "load", "tag", "untag", "delete"},
    "volume": {"create", "destroy"},
    "network": {"create", "destroy", "remove", "connect", "disconnect"},
}


@dataclass(frozen=True)
class ObjectEvent:
    """A change of an image, volume or network on the engine."""

    type: str
    action: str
    object_id: str
    name: str
    container_id: str = ""


def to_object_event(raw: dict) -> ObjectEvent | None:
    kind = raw.get("Type") or ""
    action = (raw.get("Action") or "").partition(":")[0]
    if action not in OBJECT_ACTIONS.get(kind, ()):
        return None
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    return ObjectEvent(type=kind, action=action, object_id=actor.get("ID") or "", name=attributes.get("name") or "",
                       container_id=attributes.get("container") or "")


def open_event_stream(client, since: int | None = None):
    """A blocking iterator of the engine's container events (EngineEvent) and image, volume and
    network events (ObjectEvent); close() on the returned stream ends it."""
    try:
        stream = client.api.events(decode=True, since=since, filters={"type": ["container", *OBJECT_ACTIONS]})
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    return stream


def to_engine_event(raw: dict) -> EngineEvent | None:
    if raw.get("Type") != "container":
        return None
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    action, _, detail = (raw.get("Action") or raw.get("status") or "").partition(":")
    container_id = actor.get("ID") or raw.get("id") or ""
    if not container_id:
        return None
    if detail.strip():
        # "health_status: healthy", "exec_start: sh -c ..." carry their value after the colon.
        attributes = {**attributes, "detail": detail.strip()}
    return EngineEvent(
        container_id=container_id,
        action=action.strip(),
        name=attributes.get("name", ""),
        time_nano=int(raw.get("timeNano") or int(raw.get("time") or 0) * 1_000_000_000),
        attributes=attributes,
    )


def event_time(event: EngineEvent) -> datetime | None:
    if not event.time_nano:
        return None
    return datetime.fromtimestamp(event.time_nano / 1_000_000_000, tz=UTC)


def status_text(state: str, health: str, exit_code, started_at, finished_at) -> str:
    """Docker's human status line ("Up 5 minutes (healthy)", "Exited (0) 2 hours ago")."""
    return _status_text(state, health, exit_code, started_at, finished_at)


def containers_by_name(client, pattern: str) -> list[dict]:
    """[{id, name, state, image_id}] of the containers whose name matches `pattern` (the engine's
    name filter: a regular expression on the name with its leading slash)."""
    try:
        items = client.api.containers(all=True, filters={"name": pattern})
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    result = []
    for item in items:
        names = item.get("Names") or []
        result.append({"id": item["Id"], "name": (names[0] if names else "").lstrip("/"), "state": item.get("State") or "",
                       "image_id": item.get("ImageID") or ""})
    return result

