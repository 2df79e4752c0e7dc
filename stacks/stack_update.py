"""Updating a stack as a whole: new images for its services, one service at a time, each behind a
health gate; when one fails, every changed service goes back to the image it ran before.

  validate   `compose config` of the stack's text
  pull       `compose pull` (a failing pull leaves the stack as it runs)
  check      which services' image references now name another image than their containers run
  up         each changed service in dependency order: `up -d --no-deps <service>`, then its gate:
             running after DOCKMON_UPDATE_GRACE_SECONDS, healthy when it has a HEALTHCHECK, and
             the registered readiness checks (DockMon HTTP checks), all within
             DOCKMON_UPDATE_HEALTH_TIMEOUT
  rollback   on a failed gate: each changed service's image reference is tagged back to the image
             it ran before and the recreated services are recreated from it; the run ends
             `rolled_back`, naming the service that failed and why

Called from stacks.runs (the run's `deploy` right was checked when it was asked for).
"""

from __future__ import annotations

import time

from django.conf import settings

from containers import engine, readiness
from containers.engine import facts as engine_facts
from containers.engine import images as engine_images
from stacks import compose, services
from stacks.choices import RunStage, RunStatus

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
ONE_OFF = "com.docker.compose.oneoff"


class GateFailed(Exception):
    def __init__(self, service: str, reason: str):
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


def dependency_order(config: dict, services: list[str]) -> list[str]:
    """`services` ordered so that each comes after the services it depends on (compose's
    depends_on), the rest by name; a cycle (which compose refuses anyway) keeps the name order."""
    definitions = config.get("services", {})
    wanted = set(services)
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered or name in visiting:
            return
        visiting.add(name)
        for dependency in sorted((definitions.get(name) or {}).get("depends_on") or {}):
            if dependency in wanted:
                visit(dependency)
        visiting.discard(name)
        ordered.append(name)

    for name in sorted(wanted):
        visit(name)
    return ordered


class StackUpdate:
    def __init__(self, execution):
        self.execution = execution
        self.run = execution.run
        self.stack = execution.stack
        self.host = execution.host
        self.client = None

    # --- engine facts ----------------------------------------------------------------------
    def containers(self, service: str | None = None) -> list:
        found = []
        for facts in engine_facts.list_containers(self.client):
            labels = facts.labels or {}
            if labels.get(PROJECT) != self.stack.name or labels.get(ONE_OFF) == "True":
                continue
            if service is None or labels.get(SERVICE) == service:
                found.append(facts)
        return found

    def image_id(self, ref: str) -> str:
        data = engine_images.inspect_image_raw(self.client, ref)
        return (data or {}).get("Id", "")

    # --- the run -----------------------------------------------------------------------------
    def go(self) -> str:
        """Carry the update out; returns the run's final status (the error is on the run)."""
        execution, stack = self.execution, self.stack
        self.client = engine.client_for_host(self.host, timeout=max(settings.DOCKMON_ENGINE_TIMEOUT, 30))
        try:
            execution.stage(RunStage.VALIDATE, "Checking the compose file")
            services.check_policy(stack.compose)
            result = compose.config(execution.folder, stack.name)
            services.check_config_files(result.config, execution.folder)
            before: dict[str, str] = {}
            for facts in self.containers():
                before.setdefault(facts.labels.get(SERVICE, ""), facts.image_id)
            execution.stage(RunStage.PULL, "Pulling images")
            execution.compose("pull")
            execution.stage(RunStage.CHECK, "Comparing the pulled images with what runs")
            refs = {name: (definition or {}).get("image", "") for name, definition in result.config.get("services", {}).items()}
            changed = []
            for service, old in sorted(before.items()):
                new = self.image_id(refs.get(service, "")) if refs.get(service) else ""
                if new and old and new != old:
                    changed.append(service)
                    execution.log(f"{service}: {refs[service]} is a new image ({old[7:19]} → {new[7:19]})")
            if not changed:
                execution.log("Every service runs the newest image of its reference: nothing to update")
                return RunStatus.SUCCEEDED
            execution.run.diff = [{"service": s, "change": "image", "image": refs[s], "from_image_id": before[s],
                                   "to_image_id": self.image_id(refs[s])} for s in changed]
            execution.save("diff")
            recreated: list[str] = []
            try:
                for service in dependency_order(result.config, changed):
                    execution.stage(RunStage.UP, f"Recreating {service}")
                    recreated.append(service)
                    execution.compose("up", "--detach", "--no-deps", service)
                    self.gate(service)
            except (GateFailed, compose.ComposeError) as exc:
                failed = exc.service if isinstance(exc, GateFailed) else (recreated[-1] if recreated else "")
                reason = exc.reason if isinstance(exc, GateFailed) else str(exc)
                self.rollback(changed, recreated, {s: before[s] for s in changed}, refs)
                execution.run.error = f"{failed} failed: {reason}. Every changed service was put back on the image it ran before."
                return RunStatus.ROLLED_BACK
            return RunStatus.SUCCEEDED
        finally:
            self.client.close()

    def gate(self, service: str) -> None:
        execution = self.execution
        timeout = settings.DOCKMON_UPDATE_HEALTH_TIMEOUT
        deadline = time.monotonic() + timeout
        grace_until = time.monotonic() + settings.DOCKMON_UPDATE_GRACE_SECONDS
        execution.progress(f"{service}: health gate", service=service)
        while True:
            current = self.containers(service)
            if not current:
                raise GateFailed(service, "its container is gone")
            facts = engine_facts.inspect_container(self.client, current[0].container_id)
            if facts.state in ("exited", "dead"):
                raise GateFailed(service, f"its container exited (code {facts.exit_code})")
            if facts.state == "restarting" or facts.restart_count:
                raise GateFailed(service, "its container keeps restarting")
            if facts.health == "unhealthy":
                raise GateFailed(service, "its HEALTHCHECK reports unhealthy")
            ready = time.monotonic() >= grace_until and facts.state == "running" and facts.health in ("none", "healthy")
            if ready:
                break
            if time.monotonic() >= deadline:
                raise GateFailed(service, f"not running and healthy within {timeout} s (state {facts.state}, health {facts.health})")
            time.sleep(0.5)
        # DockMon's own checks (HTTP checks) follow the container's records to its new key.
        execution.sync(quiet=True)
        key = f"{self.host.pk}:{facts.container_id[:12]}"

        def failure() -> str | None:
            now = engine_facts.inspect_container(self.client, facts.container_id)
            return None if now.state == "running" else f"its container is {now.state}"

        try:
            readiness.run_checks(readiness.Readiness(
                key=key, name=facts.name, timeout=timeout, deadline=deadline, log=execution.log,
                progress=lambda message: execution.progress(message, service=service), failure=failure))
        except readiness.NotReady as exc:
            raise GateFailed(service, str(exc)) from None
        execution.log(f"{service} passed its health gate")

    def rollback(self, changed: list[str], recreated: list[str], old_images: dict[str, str], refs: dict[str, str]) -> None:
        execution = self.execution
        execution.stage(RunStage.ROLLBACK, "Putting the changed services back on their previous images")
        for service in changed:
            engine_images.tag(self.client, old_images[service], refs[service])
            execution.log(f"{refs[service]} points at {old_images[service][7:19]} again")
        if recreated:
            execution.compose("up", "--detach", "--no-deps", "--force-recreate", *recreated)
