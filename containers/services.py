"""Container inventory: applying what engines report to the database, and announcing it."""

from __future__ import annotations

import logging

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone
from guardian.models import GroupObjectPermission, UserObjectPermission

from containers import bus
from containers.choices import ContainerState, EventCategory, HostStatus, Severity, TagSource
from containers.engine import EngineInfo
from containers.engine.facts import ContainerFacts, EngineEvent, event_time, status_text
from containers.models import Container, ContainerTag, DockerHost, Tag, container_key
from containers.signals import container_rekeyed

logger = logging.getLogger(__name__)

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_NUMBER = "com.docker.compose.container-number"

# Fields copied from engine facts onto the row. Facts from a container list (not an inspect)
# lack the timing fields, which are then left as they are.
_ALWAYS = ("name", "image", "image_id", "command", "state", "status", "health", "exit_code", "labels", "ports")
_INSPECT_ONLY = ("restart_count", "started_at", "finished_at", "mounts", "networks")


def container_payload(container: Container) -> dict:
    """What WebSocket clients get about a container (the API's list fields, minus heavy ones)."""
    return {
        "key": container.key,
        "host": str(container.host_id),
        "short_id": container.short_id,
        "name": container.name,
        "image": container.image,
        "state": container.state,
        "status": container.status,
        "health": container.health,
        "exit_code": container.exit_code,
        "compose_project": container.compose_project,
        "started_at": container.started_at,
    }


def _announce_created(container: Container, log: bool) -> None:
    bus.emit(
        "container.created",
        category=EventCategory.CONTAINER,
        host=container.host_id,
        container=container,
        message=f"{container.name} was created ({container.image})",
        data=container_payload(container),
        persist=log,
    )


def _state_payload(container: Container) -> dict:
    return {
        "key": container.key,
        "host": str(container.host_id),
        "name": container.name,
        "state": container.state,
        "status": container.status,
        "health": container.health,
        "exit_code": container.exit_code,
    }


def _state_message(container: Container, previous_state: str, previous_health: str) -> tuple[str, str, str]:
    """(type, severity, text) for a state or health change."""
    if container.health != previous_health and container.state == previous_state:
        severity = Severity.WARNING if container.health == "unhealthy" else Severity.INFO
        return "container.state", severity, f"{container.name} is {container.health}"
    if container.state == ContainerState.EXITED:
        severity = Severity.INFO if container.exit_code in (0, None) else Severity.WARNING
        return "container.state", severity, f"{container.name} exited with code {container.exit_code}"
    if container.state == ContainerState.DEAD:
        return "container.state", Severity.ERROR, f"{container.name} is dead"
    return "container.state", Severity.INFO, f"{container.name} is {container.state}"


def _compose_tag_name(project: str) -> str:
    return f"compose:{project}"


def _sync_compose_tag(container: Container) -> None:
    wanted = _compose_tag_name(container.compose_project) if container.compose_project else None
    links = ContainerTag.objects.filter(container=container, source=TagSource.COMPOSE).select_related("tag")
    for link in links:
        if link.tag.name != wanted:
            link.delete()
    if wanted and not any(link.tag.name == wanted for link in links):
        tag, _ = Tag.objects.get_or_create(name=wanted)
        ContainerTag.objects.get_or_create(container=container, tag=tag, defaults={"source": TagSource.COMPOSE})


def _same_compose_slot(a: Container, b: Container) -> bool:
    number = a.labels.get(COMPOSE_NUMBER)
    return bool(
        a.compose_project and a.compose_service and number
        and (a.compose_project, a.compose_service) == (b.compose_project, b.compose_service)
        and b.labels.get(COMPOSE_NUMBER) == number
    )


def _find_predecessor(container: Container) -> Container | None:
    """The removed container this one replaces: same host and name, or the same compose slot.

    Only containers that are gone count: one that still exists (a compose replica, or an
    update's backup) is not replaced yet. When it goes, `_find_successor` links them.
    """
    candidates = Container.objects.filter(host_id=container.host_id, replaced_by="", removed_at__isnull=False).exclude(key=container.key)
    previous = candidates.filter(name=container.name).order_by("-removed_at").first()
    if previous is not None:
        return previous
    if container.compose_project and container.compose_service:
        for other in candidates.filter(compose_project=container.compose_project, compose_service=container.compose_service).order_by("-removed_at")[:20]:
            if _same_compose_slot(container, other):
                return other
    return None


def _find_successor(container: Container) -> Container | None:
    """For a container just removed: the present one that took its compose slot after it
    (compose renames the old container, creates the new one, then removes the old)."""
    if not (container.compose_project and container.compose_service):
        return None
    taken = Container.objects.filter(host_id=container.host_id).exclude(replaced_by="").values("replaced_by")
    for other in (
        Container.objects.present()
        .filter(host_id=container.host_id, compose_project=container.compose_project, compose_service=container.compose_service,
                first_seen_at__gte=container.first_seen_at)
        .exclude(key=container.key)
        .exclude(key__in=taken)
        .order_by("-first_seen_at")[:20]
    ):
        if _same_compose_slot(other, container):
            return other
    return None


def rekey(old: Container, new: Container, *, actor=None, reason: str = "recreated") -> None:
    """Move everything that refers to `old` to `new`, in one transaction, and announce it."""
    with transaction.atomic():
        for link in ContainerTag.objects.filter(container=old, source=TagSource.USER):
            ContainerTag.objects.get_or_create(container=new, tag_id=link.tag_id, defaults={"source": TagSource.USER})
            link.delete()
        content_type = ContentType.objects.get_for_model(Container)
        moved = 0
        for model in (UserObjectPermission, GroupObjectPermission):
            moved += model.objects.filter(content_type=content_type, object_pk=old.key).update(object_pk=new.key)
        if moved:
            # .update() sends no post_save: tell open WebSockets here, before container.recreated
            # (both go out on commit, in this order), so a user granted only this container
            # gets the recreation and what follows under the new key at once.
            from containers.ws_access import announce_permissions_changed

            announce_permissions_changed("container recreated")
        if old.desired_state and not new.desired_state:
            new.desired_state = old.desired_state
            Container.objects.filter(pk=new.pk).update(desired_state=old.desired_state)
        container_rekeyed.send(sender=Container, old_key=old.key, new_key=new.key, old=old, new=new)
        Container.objects.filter(pk=old.pk).update(replaced_by=new.key)
        old.replaced_by = new.key
        bus.emit(
            "container.recreated",
            category=EventCategory.CONTAINER,
            host=new.host_id,
            container=new,
            actor=actor,
            message=f"{new.name} was {reason}: {old.short_id} → {new.short_id}",
            data={"old_key": old.key, "new_key": new.key, "name": new.name, "reason": reason},
        )


def apply_facts(host: DockerHost | str, facts: ContainerFacts, *, existing: Container | None = None, log: bool = True) -> Container:
    """Make the database say what the engine said about one container; announce changes."""
    host_id = getattr(host, "pk", host)
    key = container_key(host_id, facts.container_id)
    if existing is None:
        existing = Container.objects.filter(pk=key).first()
    values = _values_from_facts(facts)

    with transaction.atomic():
        if existing is None:
            container = Container(key=key, host_id=host_id, short_id=key.split(":", 1)[1], container_id=facts.container_id, **values)
            container.save(force_insert=True)
            _sync_compose_tag(container)
            _announce_created(container, log)
            predecessor = _find_predecessor(container)
            if predecessor is not None:
                rekey(predecessor, container)
            return container

        return _update_container(existing, values)


def _update_container(container: Container, values: dict) -> Container:
    """Save the fields in `values` that differ, and announce renames and state/health changes."""
    host_id = container.host_id
    previous_state, previous_health, previous_name = container.state, container.health, container.name
    with transaction.atomic():
        changed = [name for name, value in values.items() if getattr(container, name) != value]
        came_back = container.removed_at is not None
        if came_back:
            container.removed_at = None
            changed.append("removed_at")
        if not changed:
            return container
        for name in changed:
            if name != "removed_at":
                setattr(container, name, values[name])
        container.save(update_fields=[*changed, "updated_at"])
        if "compose_project" in changed:
            _sync_compose_tag(container)
        if container.name != previous_name:
            bus.emit(
                "container.renamed",
                category=EventCategory.CONTAINER,
                host=host_id,
                container=container,
                message=f"{previous_name} was renamed to {container.name}",
                data={"key": container.key, "old_name": previous_name, "name": container.name},
            )
        if container.state != previous_state or container.health != previous_health or came_back:
            type_, severity, text = _state_message(container, previous_state, previous_health)
            data = _state_payload(container)
            data["previous_state"] = previous_state
            bus.emit(type_, category=EventCategory.CONTAINER, severity=severity, host=host_id, container=container, message=text, data=data)
    return container


# What an engine event says about a container's state, without asking the engine again.
_EVENT_STATES = {"start": "running", "restart": "running", "unpause": "running", "pause": "paused", "die": "exited"}

# --- Stop intent (for healthchecks' auto-restart) ------------------------------------------
# A `docker stop` / `docker kill` by a person outside DockMon reaches us as the engine's "kill"
# event(s) before "die" (and "stop" after it); a crash or an OOM is a "die" with no "kill" before
# it. A die that follows a kill within STOP_INTENT_SECONDS is therefore recorded as a stop on
# purpose (desired_state="stopped"), exactly as a stop through DockMon is, so auto-restart leaves
# the container alone; the later "stop" event confirms it. A "start" means someone wants it
# running again. Signals used to reload rather than end a process do not count as intent.
STOP_INTENT_SECONDS = 120.0
_RELOAD_SIGNALS = {"1", "10", "12", "28", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "HUP", "USR1", "USR2", "WINCH"}
_kill_seen: dict[str, float] = {}  # container key -> monotonic time of its last terminating kill


def _stop_intent(key: str, action: str, signal: str) -> bool | None:
    """Track kill → die; True when this die (or stop) was asked for, None when not a die/stop."""
    from time import monotonic

    now = monotonic()
    for stale in [k for k, t in _kill_seen.items() if now - t > STOP_INTENT_SECONDS]:
        _kill_seen.pop(stale, None)
    if action == "kill":
        if signal not in _RELOAD_SIGNALS:
            _kill_seen[key] = now
        return None
    if action == "start":
        _kill_seen.pop(key, None)
        return None
    if action == "die":
        return _kill_seen.pop(key, None) is not None
    return action == "stop" or None
# --- end of stop intent ----------------------------------------------------------------------


def apply_event(host_id, event: EngineEvent) -> Container | None:
    """Apply a state-changing engine event straight from its attributes.

    Returns None when the container is not known yet (the caller then inspects it). Working from
    the event itself keeps every transition (a die followed at once by a restart is two changes,
    not one) and costs no engine round trip.
    """
    container = Container.objects.filter(pk=container_key(host_id, event.container_id), removed_at__isnull=True).first()
    if container is None:
        return None
    ts = event_time(event) or timezone.now()
    values: dict = {}
    if event.action == "rename" and event.name:
        values["name"] = event.name
    elif event.action == "health_status":
        health = event.attributes.get("detail", "")
        health = "starting" if health.startswith("health: starting") else health
        if health in ("starting", "healthy", "unhealthy"):
            values["health"] = health
    elif event.action in ("kill", "stop"):
        # Stop intent (see above): remembered on kill; a "stop" (after the die) confirms it.
        if _stop_intent(container.key, event.action, event.attributes.get("signal", "")) and container.desired_state != "stopped":
            Container.objects.filter(pk=container.pk).update(desired_state="stopped")
            container.desired_state = "stopped"
        return container
    elif event.action == "oom":
        bus.emit("container.oom", category=EventCategory.CONTAINER, severity=Severity.WARNING, host=host_id, container=container,
                 message=f"{container.name} ran out of memory", data=container.event_data())
        return container
    elif event.action in _EVENT_STATES:
        state = _EVENT_STATES[event.action]
        values["state"] = state
        if event.action == "start":
            values["started_at"] = ts
            values["exit_code"] = None
            if container.health != "none":
                values["health"] = "starting"
            _stop_intent(container.key, "start", "")  # stop intent: a start clears it ...
            if container.desired_state == "stopped":
                values["desired_state"] = "running"  # ... and someone wants it running again
        elif event.action == "die":
            if _stop_intent(container.key, "die", ""):
                values["desired_state"] = "stopped"  # stop intent: this die followed a kill
            values["finished_at"] = ts
            try:
                values["exit_code"] = int(event.attributes.get("exitCode", ""))
            except ValueError:
                values["exit_code"] = None
    if not values:
        return container
    merged = {name: values.get(name, getattr(container, name)) for name in ("state", "health", "exit_code", "started_at", "finished_at")}
    values["status"] = status_text(merged["state"], merged["health"], merged["exit_code"], merged["started_at"], merged["finished_at"])
    return _update_container(container, values)


def mark_removed(container: Container, *, log: bool = True) -> Container:
    if container.removed_at is not None:
        return container
    container.removed_at = timezone.now()
    container.state = ContainerState.REMOVED
    container.status = "Removed"
    container.save(update_fields=["removed_at", "state", "status", "updated_at"])
    bus.emit(
        "container.removed",
        category=EventCategory.CONTAINER,
        host=container.host_id,
        container=container,
        message=f"{container.name} was removed",
        data=container.event_data(host=str(container.host_id)),
        persist=log,
    )
    if not container.replaced_by:
        successor = _find_successor(container)
        if successor is not None:
            rekey(container, successor)
    return container


def remove_by_id(host_id, container_id: str) -> Container | None:
    container = Container.objects.filter(pk=container_key(host_id, container_id)).first()
    if container is not None:
        mark_removed(container)
    return container


def _values_from_facts(facts: ContainerFacts) -> dict:
    values = {name: getattr(facts, name) for name in _ALWAYS}
    if facts.complete:
        values.update({name: getattr(facts, name) for name in _INSPECT_ONLY})
    values["compose_project"] = facts.labels.get(COMPOSE_PROJECT, "")
    values["compose_service"] = facts.labels.get(COMPOSE_SERVICE, "")
    if facts.created_at:
        values["created_at"] = facts.created_at
    return values


def _create_many(host_id, facts_list: list[ContainerFacts], *, log: bool) -> list[Container]:
    """Insert many new containers at once (no predecessor to follow), with their compose tags."""
    rows = []
    for facts in facts_list:
        key = container_key(host_id, facts.container_id)
        rows.append(Container(key=key, host_id=host_id, short_id=key.split(":", 1)[1], container_id=facts.container_id, **_values_from_facts(facts)))
    Container.objects.bulk_create(rows, batch_size=500)
    projects = {row.compose_project for row in rows if row.compose_project}
    if projects:
        tags = {}
        for project in projects:
            tags[project], _ = Tag.objects.get_or_create(name=_compose_tag_name(project))
        ContainerTag.objects.bulk_create(
            [ContainerTag(container=row, tag=tags[row.compose_project], source=TagSource.COMPOSE) for row in rows if row.compose_project],
            ignore_conflicts=True,
        )
    for row in rows:
        _announce_created(row, log)
    return rows


def reconcile(host: DockerHost | str, facts_list: list[ContainerFacts], *, initial: bool = False) -> dict:
    """Make the host's containers in the database match the engine's full list exactly."""
    host_id = getattr(host, "pk", host)
    seen = {container_key(host_id, f.container_id): f for f in facts_list}
    existing = {c.key: c for c in Container.objects.filter(host_id=host_id)}
    created = updated = removed = 0
    with transaction.atomic():
        # Removals first, so a container re-created under the same name finds its predecessor.
        for key, container in existing.items():
            if key not in seen and container.removed_at is None:
                mark_removed(container)
                removed += 1
        # New containers that may replace an earlier one (same name gone, or a compose slot)
        # go one by one to carry settings over; the rest are inserted together.
        gone_names = {c.name for c in existing.values() if c.removed_at is not None and not c.replaced_by}
        compose_slots = {(c.compose_project, c.compose_service) for c in existing.values() if c.compose_project and not c.replaced_by}
        plain, followers = [], []
        for key, facts in seen.items():
            if key in existing:
                continue
            slot = (facts.labels.get(COMPOSE_PROJECT, ""), facts.labels.get(COMPOSE_SERVICE, ""))
            (followers if facts.name in gone_names or slot in compose_slots else plain).append(facts)
        _create_many(host_id, plain, log=not initial)
        for facts in followers:
            apply_facts(host_id, facts, log=not initial)
        created = len(plain) + len(followers)
        for key, facts in seen.items():
            row = existing.get(key)
            if row is None:
                continue
            before = row.updated_at
            result = apply_facts(host_id, facts, existing=row, log=not initial)
            if result.updated_at != before:
                updated += 1
    return {"created": created, "updated": updated, "removed": removed, "total": len(seen)}


def set_host_status(host_id, status: str, *, error: str = "", info: EngineInfo | None = None) -> DockerHost | None:
    """Record a host's reachability; announce it when it changes."""
    with transaction.atomic():
        host = DockerHost.objects.select_for_update().filter(pk=host_id).first()
        if host is None:
            return None
        now = timezone.now()
        previous = host.status
        fields = ["status", "last_error", "updated_at"]
        host.status = status
        host.last_error = error
        if status == HostStatus.ONLINE:
            host.last_seen_at = now
            fields.append("last_seen_at")
        if info is not None:
            host.engine_version = info.version
            host.api_version = info.api_version
            host.engine_id = info.engine_id
            host.engine_name = info.name
            host.os = info.os
            fields += ["engine_version", "api_version", "engine_id", "engine_name", "os"]
        if previous != status:
            host.status_changed_at = now
            fields.append("status_changed_at")
        host.save(update_fields=fields)
        if previous != status:
            severity = Severity.INFO if status == HostStatus.ONLINE else Severity.ERROR
            text = f"{host.name} is {status}" + (f": {error}" if error else "")
            bus.emit(
                "host.status",
                category=EventCategory.HOST,
                severity=severity,
                host=host,
                message=text,
                data={"host": str(host.pk), "name": host.name, "status": status, "previous": previous, "error": error},
            )
    return host


def touch_host(host_id) -> None:
    DockerHost.objects.filter(pk=host_id).update(last_seen_at=timezone.now())


def test_host(host: DockerHost, *, timeout: float | None = None) -> dict:
    """Connect to a host's engine once; record and return the outcome (never raises EngineError)."""
    from time import monotonic

    from django.conf import settings

    from containers import engine

    timeout = settings.DOCKMON_PROBE_TIMEOUT if timeout is None else timeout
    started = monotonic()
    result = {"ok": False, "status": HostStatus.OFFLINE, "error": "", "engine_version": "", "api_version": "",
              "engine_name": "", "os": "", "containers": None}
    try:
        info = engine.probe(host.url, tls_ca=host.tls_ca, tls_cert=host.tls_cert, tls_key=host.tls_key, timeout=timeout)
    except engine.EngineError as exc:
        result["status"] = HostStatus.OFFLINE if exc.unreachable else HostStatus.ERROR
        result["error"] = str(exc)
        set_host_status(host.pk, result["status"], error=result["error"])
    else:
        result.update(ok=True, status=HostStatus.ONLINE, engine_version=info.version, api_version=info.api_version,
                      engine_name=info.name, os=info.os, containers=info.containers)
        set_host_status(host.pk, HostStatus.ONLINE, info=info)
    result["elapsed_ms"] = int((monotonic() - started) * 1000)
    host.refresh_from_db()
    return result


def record_disk_usage(host: DockerHost):
    """Ask the engine for `docker system df` and store it."""
    from containers import engine
    from containers.engine import stats as engine_stats
    from containers.models import DiskUsage

    # The engine walks every layer and volume to answer: allow it far longer than a normal call.
    client = engine.client_for_host(host, timeout=120)
    try:
        numbers = engine_stats.disk_usage(client)
    finally:
        client.close()
    return DiskUsage.objects.create(host=host, **numbers)
