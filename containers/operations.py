"""Container operations (start, stop, ..., rename, remove), one at a time or in bulk.

Each operation is permission-checked by the caller (API, admin, UI), runs against the engine
with a timeout, records the container's fresh state at once (the monitor's event for the same
change is then a no-op), keeps what the person wanted as `desired_state` (so a stop on purpose
is never mistaken for a crash), and is written to the event log with who did it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db import close_old_connections

from accounts import audit
from containers import engine, services
from containers.choices import DesiredState, EventCategory, Severity
from containers.models import Container
from dockmon_site import bus

logger = logging.getLogger(__name__)

_DESIRED = {
    "start": DesiredState.RUNNING,
    "restart": DesiredState.RUNNING,
    "unpause": DesiredState.RUNNING,
    "stop": DesiredState.STOPPED,
    "kill": DesiredState.STOPPED,
    "pause": DesiredState.STOPPED,
}
BULK_ACTIONS = (*engine.OPERATIONS, "remove")


class OperationError(Exception):
    """An operation that could not be done; `status` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


@dataclass
class BulkResult:
    key: str
    ok: bool
    state: str = ""
    error: str = ""
    status: int = 200


def _fail(container: Container, exc: engine.EngineError) -> OperationError:
    if isinstance(exc, engine.ContainerGone):
        services.mark_removed(container)
        return OperationError(f"{container.name} no longer exists on {container.host.name}.", 404)
    if exc.unreachable:
        return OperationError(f"Host {container.host.name} is unreachable: {exc}", 503)
    return OperationError(str(exc), 409)


def _refresh(client, container: Container) -> Container:
    try:
        facts = engine.inspect_container(client, container.container_id)
    except engine.ContainerGone:
        return services.mark_removed(container)
    except engine.EngineError:
        return container  # the operation worked; the monitor will catch up with the details
    return services.apply_facts(container.host_id, facts, existing=container)


def _log(container: Container, action: str, user, detail: str = "", severity: str = Severity.INFO, **data) -> None:
    # The audit log gets every operation, whatever started it (API, admin action, UI, bulk,
    # auto-restart); within an API call this fills in that call's own audit row.
    audit.record(user, f"container.{action}", obj=container, changes={k: v for k, v in data.items() if k != "ok"} or None,
                 status=200 if data.get("ok") else 409)
    who = getattr(user, "username", None) or "DockMon"
    bus.emit(
        "container.operation",
        category=EventCategory.USER,
        severity=severity,
        host=container.host_id,
        container=container,
        actor=user,
        message=f"{who}: {action} {container.name}" + (f" ({detail})" if detail else ""),
        data={"key": container.key, "name": container.name, "action": action, **data},
    )


def _check_present(container: Container) -> None:
    if container.removed_at is not None:
        raise OperationError(f"{container.name} was removed from {container.host.name}.", 404)


def run(container: Container, action: str, *, user=None, timeout: int | None = None, signal: str | None = None) -> Container:
    """Start/stop/restart/kill/pause/unpause one container. Raises OperationError."""
    _check_present(container)
    client = engine.client_for_host(container.host)
    try:
        try:
            engine.operate(client, container.container_id, action, timeout=timeout, signal=signal)
        except engine.EngineError as exc:
            error = _fail(container, exc)
            _log(container, action, user, f"failed: {error}", Severity.WARNING, ok=False, error=str(error))
            raise error from exc
        if action in _DESIRED:
            Container.objects.filter(pk=container.pk).update(desired_state=_DESIRED[action])
            container.desired_state = _DESIRED[action]
        container = _refresh(client, container)
    finally:
        client.close()
    _log(container, action, user, ok=True)
    return container


def rename(container: Container, name: str, *, user=None) -> Container:
    _check_present(container)
    old_name = container.name
    client = engine.client_for_host(container.host)
    try:
        try:
            engine.rename(client, container.container_id, name)
        except engine.EngineError as exc:
            raise _fail(container, exc) from exc
        container = _refresh(client, container)
    finally:
        client.close()
    _log(container, "rename", user, f"{old_name} → {name}", ok=True, old_name=old_name)
    return container


def remove(container: Container, *, user=None, force: bool = False, volumes: bool = False) -> Container:
    _check_present(container)
    client = engine.client_for_host(container.host)
    try:
        try:
            engine.remove(client, container.container_id, force=force, volumes=volumes)
        except engine.ContainerGone:
            pass  # already gone: the wish is fulfilled
        except engine.EngineError as exc:
            if engine.engine_status_code(exc) == 409 and not force:
                raise OperationError(f"{container.name} is running: stop it first or remove with force.", 409) from exc
            raise _fail(container, exc) from exc
    finally:
        client.close()
    services.mark_removed(container)
    _log(container, "remove", user, "force" if force else "", ok=True, force=force, volumes=volumes)
    return container


def _one(key: str, action: str, user, options: dict, allowed) -> BulkResult:
    close_old_connections()
    try:
        container = Container.objects.select_related("host").filter(pk=key).first()
        # An invisible container is reported exactly like a missing one: nothing leaks.
        if container is None or not allowed(container):
            return BulkResult(key=key, ok=False, error="Not found.", status=404)
        try:
            if action == "remove":
                result = remove(container, user=user, force=options.get("force", False), volumes=options.get("volumes", False))
            else:
                result = run(container, action, user=user, timeout=options.get("timeout"))
        except OperationError as exc:
            return BulkResult(key=key, ok=False, error=str(exc), status=exc.status)
        return BulkResult(key=key, ok=True, state=result.state)
    except Exception as exc:  # one broken item must not sink the others
        logger.exception("bulk %s failed for %s", action, key)
        return BulkResult(key=key, ok=False, error=f"Internal error: {exc.__class__.__name__}", status=500)
    finally:
        close_old_connections()


def bulk(keys: list[str], action: str, *, user=None, options: dict | None = None, allowed=lambda c: True,
         per_host: int = 3, workers: int = 12) -> list[BulkResult]:
    """Run one action over many containers: at most `per_host` at a time on any one engine."""
    options = options or {}
    keys = list(dict.fromkeys(keys))
    by_host: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        by_host[key.split(":", 1)[0]].append(key)
    # Round-robin across hosts in chunks of `per_host`, so no engine gets more than that at once.
    waves: list[list[str]] = []
    queues = {host: list(items) for host, items in by_host.items()}
    while any(queues.values()):
        wave = []
        for items in queues.values():
            wave.extend(items[:per_host])
            del items[:per_host]
        waves.append(wave)
    results: dict[str, BulkResult] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bulk") as pool:
        for wave in waves:
            for result in pool.map(lambda k: _one(k, action, user, options, allowed), wave):
                results[result.key] = result
    return [results[key] for key in keys]
