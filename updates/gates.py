"""The health gate of an update: does the new container work?

In order, all within the run's health timeout after the grace period:
  1. it is running after DOCKMON_UPDATE_GRACE_SECONDS (a one-shot container that exited 0 with
     restart `no`/`on-failure` passes at once; one that keeps restarting fails);
  2. a Docker HEALTHCHECK, when the image has one, reports healthy;
  3. every readiness check other apps registered in containers.readiness passes (healthchecks:
     DockMon's HTTP checks of the container).
"""

from __future__ import annotations

import time

from django.conf import settings

from containers import engine, readiness
from containers.engine import recreate as engine_recreate

_ONE_SHOT_POLICIES = ("", "no", "on-failure")


class GateFailed(Exception):
    """The new container did not pass (or could not be inspected); the run rolls back."""


def health_gate(execution, swap) -> None:
    """Wait until the new container of `swap` passes, or raise GateFailed.

    `execution` is the run (updates.executor.Execution): its engine client, log, live progress
    and health timeout."""
    client = execution.client
    deadline = time.monotonic() + settings.DOCKMON_UPDATE_GRACE_SECONDS
    ran_once = False
    while True:
        data = _inspect(client, swap.new_id)
        verdict = judge_running(data)
        if verdict is True:
            execution.log(f"{swap.name} ran once and exited 0 (restart policy {_restart_policy(data) or 'no'}): a one-shot success")
            return
        if verdict:
            raise GateFailed(f"The new {swap.name} {verdict}")
        if ran_once and time.monotonic() >= deadline:
            break
        ran_once = True
        execution.progress(None, "grace period")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())) or 0.05)
    execution.log(f"{swap.name} is running after the grace period")
    health_deadline = time.monotonic() + execution.health_timeout
    if (data.get("State") or {}).get("Health"):
        _docker_healthcheck(execution, swap, data, health_deadline)

    def failure() -> str | None:
        verdict = judge_running(_inspect(client, swap.new_id))
        return f"The new {swap.name} {verdict}" if verdict and verdict is not True else None

    try:
        readiness.run_checks(readiness.Readiness(
            key=swap.new_key, name=swap.name, timeout=execution.health_timeout, deadline=health_deadline,
            log=execution.log, progress=lambda text: execution.progress(None, text), failure=failure,
        ))
    except readiness.NotReady as exc:
        raise GateFailed(str(exc)) from None


def _docker_healthcheck(execution, swap, data: dict, deadline: float) -> None:
    execution.log("Waiting for the Docker HEALTHCHECK to report healthy")
    while True:
        health = (data.get("State") or {}).get("Health") or {}
        status = health.get("Status")
        if status == "healthy":
            execution.log("Docker HEALTHCHECK: healthy")
            return
        if status == "unhealthy":
            raise GateFailed(f"The new {swap.name}'s HEALTHCHECK reported unhealthy: {_last_health_output(health)}")
        verdict = judge_running(data)
        if verdict:
            raise GateFailed(f"The new {swap.name} {verdict if verdict is not True else 'exited during its health check'}")
        if time.monotonic() >= deadline:
            raise GateFailed(f"The new {swap.name}'s HEALTHCHECK did not report healthy within {execution.health_timeout}s "
                             f"(status {status}): {_last_health_output(health)}")
        execution.progress(None, f"health: {status}")
        time.sleep(0.5)
        data = _inspect(execution.client, swap.new_id)


def _inspect(client, container_id: str) -> dict:
    try:
        return engine_recreate.inspect_raw(client, container_id)
    except engine.EngineError as exc:
        raise GateFailed(f"Inspecting the new container failed: {exc}") from exc


def judge_running(data: dict):
    """None while it looks fine; True for a finished one-shot; else why it failed (a phrase)."""
    state = data.get("State") or {}
    if state.get("Restarting") or int(data.get("RestartCount") or 0) > 0:
        return f"keeps restarting (exit code {state.get('ExitCode')}, restarted {data.get('RestartCount') or 0} time(s))"
    if state.get("Running"):
        return None
    code = state.get("ExitCode")
    if state.get("Status") == "exited" and code == 0 and _restart_policy(data) in _ONE_SHOT_POLICIES:
        return True
    error = state.get("Error") or ""
    return f"is not running: {state.get('Status')} (exit code {code}){': ' + error if error else ''}"


def _restart_policy(data: dict) -> str:
    return (((data.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "")


def _last_health_output(health: dict) -> str:
    log = health.get("Log") or []
    if not log:
        return "no health check result yet"
    last = log[-1]
    return f"exit {last.get('ExitCode')}: {(last.get('Output') or '').strip()[:300] or 'no output'}"
