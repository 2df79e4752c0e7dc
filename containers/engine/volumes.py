"""Volumes on the engine: list, create, remove, prune (with the users of each)."""

from __future__ import annotations

from dataclasses import dataclass

import docker.errors

from containers.engine.errors import ENGINE_FAILURES, EngineError, wrap_error
from containers.engine.images import matches_labels


@dataclass(frozen=True)
class VolumeFacts:
    name: str
    driver: str
    mountpoint: str
    labels: dict
    created: str  # the engine's own timestamp text (RFC 3339 with an offset)
    scope: str


class VolumeGone(EngineError):
    """No such volume on the engine."""


class VolumeExists(EngineError):
    """A volume of that name exists already."""


def _facts(item: dict) -> VolumeFacts:
    return VolumeFacts(name=item.get("Name") or "", driver=item.get("Driver") or "", mountpoint=item.get("Mountpoint") or "",
                       labels=dict(item.get("Labels") or {}), created=item.get("CreatedAt") or "", scope=item.get("Scope") or "")


def list_volumes(client) -> list[VolumeFacts]:
    try:
        answer = client.api.volumes()
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    return [_facts(item) for item in (answer or {}).get("Volumes") or []]


def inspect(client, name: str) -> VolumeFacts:
    try:
        return _facts(client.api.inspect_volume(name))
    except docker.errors.NotFound as exc:
        raise VolumeGone(f"No volume {name} on the engine.") from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def sizes(client) -> dict[str, int]:
    """Volume name -> bytes used, from the engine's disk usage (a slower call: asked on demand)."""
    try:
        data = client.api.df()
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    result = {}
    for item in data.get("Volumes") or []:
        size = int((item.get("UsageData") or {}).get("Size") or -1)
        if size >= 0:
            result[item.get("Name")] = size
    return result


def create(client, name: str, *, driver: str = "local", labels: dict | None = None) -> VolumeFacts:
    """Create a volume. The engine answers a create of an existing name with that volume (no
    error): asked first, so that a name in use is refused instead of silently shared."""
    try:
        client.api.inspect_volume(name)
    except docker.errors.NotFound:
        pass
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    else:
        raise VolumeExists(f"A volume named {name} exists already on this host.")
    try:
        return _facts(client.api.create_volume(name=name, driver=driver or "local", labels=labels or None))
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def remove(client, name: str) -> None:
    try:
        client.api.remove_volume(name, force=False)
    except docker.errors.NotFound as exc:
        raise VolumeGone(f"No volume {name} on the engine.") from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def prune_candidates(client, used: set[str], *, labels: list[str]) -> list[VolumeFacts]:
    """Volumes no container (running or stopped) mounts, carrying every `labels` rule: what
    the dry run lists and the real run removes."""
    return sorted((volume for volume in list_volumes(client) if volume.name not in used and matches_labels(volume.labels, labels)),
                  key=lambda volume: volume.name)
