"""Container lifecycle operations on the engine: start, stop, restart, kill, pause, unpause, rename, remove."""

from __future__ import annotations

from containers.engine.errors import ENGINE_FAILURES, wrap_error

OPERATIONS = ("start", "stop", "restart", "kill", "pause", "unpause")


def operate(client, container_id: str, action: str, *, timeout: int | None = None, signal: str | None = None) -> None:
    """Run one lifecycle operation. `timeout` is the stop grace period in seconds."""
    if action not in OPERATIONS:
        raise ValueError(f"unknown operation {action!r}")
    api = client.api
    try:
        if action == "start":
            api.start(container_id)
        elif action == "stop":
            # The HTTP call lasts as long as the grace period: give the socket that long too.
            api.stop(container_id, timeout=timeout if timeout is not None else 10)
        elif action == "restart":
            api.restart(container_id, timeout=timeout if timeout is not None else 10)
        elif action == "kill":
            api.kill(container_id, signal=signal or "SIGKILL")
        elif action == "pause":
            api.pause(container_id)
        else:
            api.unpause(container_id)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def rename(client, container_id: str, name: str) -> None:
    try:
        client.api.rename(container_id, name)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def remove(client, container_id: str, *, force: bool = False, volumes: bool = False) -> None:
    try:
        client.api.remove_container(container_id, force=force, v=volumes)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc

