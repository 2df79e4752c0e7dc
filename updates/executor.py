"""The update executor: recreate a container on a new image, health-gate it, roll back on failure.

One run (an UpdateRun row) goes through these stages, each published live as `update.progress`
and kept on the row with its timing:

  validate   the container exists and is not being updated, the requester may `update` it,
             the policy allows it (warn needs force; block and DockMon itself never)
  pull       the image reference, with byte progress
  inspect    the full configuration (engine.recreate_spec) and the dependents sharing its network
  stop       the old container (when it runs)
  rename     the old container becomes `<name>-dockmon-backup-<run>` (the way back)
  create     a new container with the original name and the whole configuration; right after,
             every record of the old key moves to the new one in one transaction (the commitment
             point: from here the database follows the engine, a DB error is logged and repaired)
  start      when the old one was running (a stopped container stays stopped)
  health     running after a grace period; a Docker HEALTHCHECK must turn healthy and DockMon's
             HTTP checks of the container must pass within the timeout; a one-shot container
             that exits 0 with restart `no`/`on-failure` passes
  dependents containers with `network_mode: container:<this>` are recreated onto the new one
  cleanup    the backup is removed; old images beyond the last N kept are removed
Any failure after the stop rolls back: the new container is removed, the backup gets its name
back and its running state, the records move back, and the digest is remembered so auto-update
does not try it again.

A worker that dies in the middle leaves a run `running` with a dead worker: repair() (run when
a worker starts and periodically) finds it, and puts the engine and the database in a consistent
state from what the engine shows (finishing a run that had passed its health gate, rolling back
one that had not). Backups are found by their name; none is ever removed without a record.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from containers import bus, engine
from containers import services as container_services
from containers.choices import EventCategory, Severity
from containers.models import Container, DockerHost
from dockmon_site.permissions import has_container_perm
from updates.choices import ACTIVE_RUN_STATUSES, Policy, RunStage, RunStatus, RunTrigger, UpdateStatus
from updates.models import ContainerUpdate, RolledBackDigest, UpdateRun
from updates.policies import decide
from updates.registry import is_image_id, parse_reference

logger = logging.getLogger(__name__)

BACKUP_SUFFIX = "-dockmon-backup-"
BACKUP_NAME = re.compile(r"^(?P<name>.+)-dockmon-backup-(?P<run>\d+)$")
_PERCENT = {
    RunStage.VALIDATE: 2, RunStage.PULL: 5, RunStage.INSPECT: 52, RunStage.STOP: 58, RunStage.RENAME: 62,
    RunStage.CREATE: 66, RunStage.START: 72, RunStage.HEALTH: 76, RunStage.DEPENDENTS: 90, RunStage.CLEANUP: 95,
    RunStage.ROLLBACK: 95, RunStage.DONE: 100,
}
_ONE_SHOT_POLICIES = ("", "no", "on-failure")


class RunRefused(Exception):
    """An update that may not run; `status` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 409, run: UpdateRun | None = None):
        super().__init__(message)
        self.status = status
        self.run = run


class StageFailed(Exception):
    """The update cannot go on; everything changed so far is rolled back."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backup_name(name: str, run_id: int) -> str:
    return f"{name}{BACKUP_SUFFIX}{run_id}"


# ---------------------------------------------------------------------------
# Asking for an update
# ---------------------------------------------------------------------------
def check_allowed(container: Container, *, user=None, force: bool = False, trigger: str = RunTrigger.MANUAL) -> None:
    """Raise RunRefused unless `container` may be updated now by `user` (None = DockMon itself)."""
    if container.removed_at is not None or container.replaced_by:
        raise RunRefused(f"{container.name} no longer exists (it was removed or replaced).", 404)
    if user is not None and not has_container_perm(user, "update", container):
        raise RunRefused(f"You may not update {container.name}.", 403)
    decision = decide(container)
    if decision.rule == "self":
        raise RunRefused(decision.reason, 403)
    if decision.policy == Policy.BLOCK:
        raise RunRefused(f"The update policy blocks updates of {container.name}: {decision.reason}", 403)
    if decision.policy == Policy.WARN:
        if trigger == RunTrigger.AUTO:
            raise RunRefused(f"The update policy of {container.name} is warn, which auto-update skips: {decision.reason}", 409)
        if not force:
            raise RunRefused(f"The update policy of {container.name} is warn: repeat with force to update it anyway. "
                             f"{decision.reason}", 409)
    try:
        ref = parse_reference(container.image or "")
    except ValueError:
        ref = None
    if ref is None or is_image_id(container.image or ""):
        raise RunRefused(f"{container.name} was created from an image ID, not a name: there is nothing to pull.", 400)
    if ref.pinned:
        raise RunRefused(f"{container.name} is pinned to a digest ({container.image}): a digest never changes.", 400)


def request_update(container: Container, *, user=None, force: bool = False, trigger: str = RunTrigger.MANUAL,
                   batch: str = "", health_timeout: int | None = None, enqueue: bool = True) -> UpdateRun:
    """Validate and record an update of one container; start it when the host has room.

    Two requests racing for one container both pass the checks, but only one row can be
    pending or running per container (a partial unique constraint): the other gets a 409."""
    check_allowed(container, user=user, force=force, trigger=trigger)
    active = UpdateRun.objects.filter(host_id=container.host_id, container_name=container.name, status__in=ACTIVE_RUN_STATUSES).first()
    if active is not None:
        raise RunRefused(f"{container.name} is being updated already (run #{active.pk}).", 409, active)
    target = ContainerUpdate.objects.filter(container_id=container.pk).values_list("latest_digest", flat=True).first() or ""
    try:
        with transaction.atomic():
            run = UpdateRun.objects.create(
                host_id=container.host_id, container=container, container_name=container.name, old_key=container.key,
                target_digest=target,
                trigger=trigger, force=force, batch=batch, requested_by=user if getattr(user, "is_authenticated", False) else None,
                image=container.image, health_timeout=health_timeout, old_container_id=container.container_id,
            )
    except IntegrityError:
        active = UpdateRun.objects.filter(host_id=container.host_id, container_name=container.name, status__in=ACTIVE_RUN_STATUSES).first()
        raise RunRefused(f"{container.name} is being updated already" + (f" (run #{active.pk})." if active else "."), 409, active) from None
    if enqueue:
        kick(container.host_id)
    return run


def kick(host_id) -> list[int]:
    """Start the host's waiting runs while fewer than the per-host limit are under way.

    Each started run claims one of the host's slots 1..limit with a conditional UPDATE; a
    partial unique constraint on (host, slot) among active runs refuses a slot another kick
    took meanwhile, so concurrent kicks never exceed the limit (on SQLite as on PostgreSQL)."""
    limit = settings.DOCKMON_UPDATE_CONCURRENCY_PER_HOST
    waiting = list(UpdateRun.objects.filter(host_id=host_id, status=RunStatus.PENDING, queued_at__isnull=True)
                   .order_by("id").values_list("pk", flat=True)[: limit * 2])
    if not waiting:
        return []
    active = UpdateRun.objects.filter(host_id=host_id, status__in=ACTIVE_RUN_STATUSES)
    taken = set(active.filter(slot__isnull=False).values_list("slot", flat=True))
    # A run started without a slot (execute() called directly) still takes room on the host.
    unslotted = active.filter(slot__isnull=True).filter(Q(status=RunStatus.RUNNING) | Q(queued_at__isnull=False)).count()
    free = [s for s in range(1, limit + 1) if s not in taken][: max(0, limit - len(taken) - unslotted)]
    started = []
    for run_id in waiting:
        while free:
            slot = free.pop(0)
            try:
                with transaction.atomic():
                    claimed = UpdateRun.objects.filter(pk=run_id, status=RunStatus.PENDING, queued_at__isnull=True).update(
                        queued_at=timezone.now(), slot=slot)
            except IntegrityError:
                continue  # another kick took this slot first: try the next one
            if claimed:
                started.append(run_id)
            else:
                free.insert(0, slot)  # another kick started this run: the slot is still ours to give
            break
        if not free:
            break
    for run_id in started:
        transaction.on_commit(lambda run_id=run_id: _enqueue(run_id))
    return started


def _enqueue(run_id: int) -> None:
    from updates.tasks import execute_update

    options = {"queue": settings.DOCKMON_UPDATE_QUEUE} if settings.DOCKMON_UPDATE_QUEUE else {}
    try:
        execute_update.apply_async(args=[run_id], **options)
    except Exception:  # broker down: repair() enqueues it again later
        logger.exception("could not enqueue update run %s", run_id)
        UpdateRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(queued_at=None, slot=None)


# ---------------------------------------------------------------------------
# Running one update
# ---------------------------------------------------------------------------
def execute(run_id: int) -> UpdateRun | None:
    """Run one update to its end (the Celery task's body). A run that is not pending is left alone."""
    now = timezone.now()
    claimed = UpdateRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, worker=worker_id(), queued_at=now
    )
    if not claimed:
        return None
    run = UpdateRun.objects.select_related("host", "requested_by").get(pk=run_id)
    try:
        _Execution(run).go()
    finally:
        kick(run.host_id)
    run.refresh_from_db()
    return run


@dataclass
class _Swap:
    """One container being replaced: the main one, or a dependent sharing its network."""

    old_key: str
    old_id: str
    name: str
    was_running: bool
    desired_state: str
    body: dict
    extra: list
    backup: str = ""
    renamed: bool = False
    stopped: bool = False
    new_id: str = ""
    new_key: str = ""
    committed: bool = False
    new_removed: bool = False


class _Execution:
    def __init__(self, run: UpdateRun):
        self.run = run
        self.host = run.host
        self.client = None
        self.stage_started = time.monotonic()
        self.lines: list[str] = [run.log] if run.log else []
        self.swaps: list[_Swap] = []
        self.update_snapshot: dict | None = None
        self.last_progress = 0.0
        self.health_timeout = run.health_timeout or settings.DOCKMON_UPDATE_HEALTH_TIMEOUT
        self.rolled_back = False

    # --- bookkeeping -------------------------------------------------------------------
    def log(self, text: str) -> None:
        line = f"{timezone.now():%Y-%m-%d %H:%M:%S} [{self.run.stage}] {text}"
        logger.info("update #%s: %s", self.run.pk, text)
        self.lines.append(line)
        self.save("log")

    def save(self, *fields: str) -> None:
        run = self.run
        run.log = "\n".join(self.lines)[-100_000:]
        run.heartbeat_at = timezone.now()
        try:
            UpdateRun.objects.filter(pk=run.pk).update(**{f: getattr(run, f) for f in {*fields, "log", "heartbeat_at"}})
        except Exception:  # bookkeeping must never break the engine work
            logger.exception("could not save update run %s", run.pk)

    def key(self) -> str:
        """The key the container has now (events go out under it, so per-container grants apply)."""
        if self.rolled_back:
            return self.run.old_key
        return self.run.new_key or self.run.old_key

    def progress(self, percent: int | None = None, message: str = "", force: bool = False) -> None:
        run = self.run
        if percent is not None:
            run.percent = max(0, min(100, int(percent)))
        now = time.monotonic()
        if not force and now - self.last_progress < 0.5:
            return
        self.last_progress = now
        self.save("percent", "stage")
        bus.emit("update.progress", category=EventCategory.UPDATE, persist=False, host=self.host.pk, container=self.key(),
                 data={"run": run.pk, "key": self.key(), "name": run.container_name, "stage": run.stage,
                       "percent": run.percent, "message": message})

    def stage(self, stage: str, message: str = "") -> None:
        run = self.run
        now = time.monotonic()
        run.timings[run.stage] = round(run.timings.get(run.stage, 0) + now - self.stage_started, 3)
        self.stage_started = now
        run.stage = stage
        self.save("stage", "timings")
        if message:
            self.log(message)
        self.progress(_PERCENT.get(stage), message, force=True)

    def emit(self, type_: str, message: str, severity: str = Severity.INFO, **data) -> None:
        run = self.run
        bus.emit(type_, category=EventCategory.UPDATE, severity=severity, host=self.host.pk, container=self.key(),
                 actor=run.requested_by, message=message,
                 data={"run": run.pk, "key": self.key(), "name": run.container_name, "old_key": run.old_key,
                       "new_key": run.new_key, "status": run.status, "stage": run.stage, "image": run.image,
                       "from_digest": run.from_digest, "to_digest": run.to_digest, **data})

    def finish(self, status: str, error: str = "") -> None:
        run = self.run
        now = time.monotonic()
        run.timings[run.stage] = round(run.timings.get(run.stage, 0) + now - self.stage_started, 3)
        run.status, run.error, run.finished_at = status, error, timezone.now()
        if status == RunStatus.SUCCEEDED:
            run.stage, run.percent = RunStage.DONE, 100
        self.save("status", "error", "finished_at", "stage", "percent", "timings", "new_key", "committed")
        self.progress(run.percent, error or "done", force=True)

    # --- the run -----------------------------------------------------------------------
    def go(self) -> None:
        run = self.run
        try:
            self.client = engine.client_for_host(self.host, timeout=max(settings.DOCKMON_ENGINE_TIMEOUT, 30))
        except engine.EngineError as exc:
            self.finish(RunStatus.FAILED, f"Host {self.host.name} is unreachable: {exc}")
            self.emit("update.failed", f"Update of {run.container_name} failed: {run.error}", Severity.ERROR)
            return
        try:
            self._go()
        except StageFailed as exc:
            self._fail(str(exc))
        except Exception as exc:  # a bug or an engine surprise: still leave a consistent state
            logger.exception("update run %s failed unexpectedly", run.pk)
            self._fail(f"Unexpected error during {run.stage}: {exc.__class__.__name__}: {exc}")
        finally:
            try:
                self.client.close()
            except Exception:
                logger.debug("closing the engine client failed", exc_info=True)

    def _call(self, what: str, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except engine.EngineError as exc:
            raise StageFailed(f"{what} failed: {exc}") from exc

    def _go(self) -> None:
        run = self.run
        self.stage(RunStage.VALIDATE, f"Update of {run.container_name} requested ({run.get_trigger_display()}"
                   + (f" by {run.requested_by}" if run.requested_by_id else "") + ")")
        container = Container.objects.select_related("host").filter(pk=run.old_key).first()
        if container is None:
            raise StageFailed(f"The container {run.old_key} is not known any more.")
        try:
            check_allowed(container, user=run.requested_by if run.requested_by_id else None, force=run.force, trigger=run.trigger)
        except RunRefused as exc:
            raise StageFailed(str(exc)) from None
        old = self._call("Inspecting the container", engine.inspect_raw, self.client, container.container_id)
        state = old.get("State") or {}
        if state.get("Paused"):
            raise StageFailed(f"{run.container_name} is paused: unpause it (or stop it) before updating.")
        run.was_running = bool(state.get("Running"))
        run.old_container_id = old["Id"]
        run.from_image_id = old.get("Image") or ""
        run.image = (old.get("Config") or {}).get("Image") or container.image
        row = ContainerUpdate.objects.filter(container_id=container.pk).first()
        if row is not None:
            self.update_snapshot = {f: getattr(row, f) for f in ("status", "update_available", "current_digest", "latest_digest",
                                                                  "latest_version", "error", "available_since")}
        old_image = engine.inspect_image_raw(self.client, run.from_image_id) if run.from_image_id else None
        run.from_digest = (row.current_digest if row and row.current_digest else "") or _repo_digest(old_image, run.image)
        self.save("was_running", "old_container_id", "from_image_id", "image", "from_digest")
        self.emit("update.started", f"Update of {run.container_name} started ({run.image})",
                  timeout_seconds=self.health_timeout + settings.DOCKMON_UPDATE_PULL_TIMEOUT)

        # pull
        self.stage(RunStage.PULL, f"Pulling {run.image}")

        def on_progress(done, total, status):
            if total:
                self.progress(5 + int(45 * done / total), f"{status} {done}/{total} bytes")

        run.to_image_id = self._call(f"Pulling {run.image}", engine.pull, self.client, run.image, on_progress,
                                     timeout=settings.DOCKMON_UPDATE_PULL_TIMEOUT)
        new_image = engine.inspect_image_raw(self.client, run.to_image_id)
        run.to_digest = _repo_digest(new_image, run.image)
        self.save("to_image_id", "to_digest")
        self.log(f"Pulled {run.image}: {run.to_image_id[:19]} ({run.to_digest or 'no registry digest'})")
        if run.to_image_id == run.from_image_id:
            self.log("The container already runs this image: nothing to do.")
            self._mark_current(container.pk)
            self.finish(RunStatus.SUCCEEDED)
            self.emit("update.succeeded", f"{run.container_name} is already up to date ({run.image})", up_to_date=True)
            return
        if run.trigger == RunTrigger.AUTO and run.to_digest and RolledBackDigest.objects.filter(container_id=container.pk, digest=run.to_digest).exists():
            raise StageFailed(f"{run.to_digest[:19]} was rolled back on this container before; auto-update does not retry it.")

        # inspect
        self.stage(RunStage.INSPECT, "Reading the configuration")
        body, extra = engine.recreate_spec(old, old_image, run.image)
        _fit_network_mode(body)
        main = _Swap(container.pk, old["Id"], run.container_name, run.was_running, container.desired_state, body, extra)
        self.swaps.append(main)
        dependents = self._call("Looking for dependent containers", engine.dependents_sharing_network, self.client, old["Id"])
        dep_swaps = []
        for dep_id in dependents:
            dep = self._call("Inspecting a dependent container", engine.inspect_raw, self.client, dep_id)
            dep_image = engine.inspect_image_raw(self.client, dep.get("Image") or "")
            dep_body, dep_extra = engine.recreate_spec(dep, dep_image, (dep.get("Config") or {}).get("Image") or dep.get("Image"))
            _fit_network_mode(dep_body)
            dep_row = Container.objects.filter(pk=f"{self.host.pk}:{dep_id[:12]}").first()
            dep_swaps.append(_Swap(f"{self.host.pk}:{dep_id[:12]}", dep_id, dep["Name"].lstrip("/"), bool((dep.get("State") or {}).get("Running")),
                                   dep_row.desired_state if dep_row else "", dep_body, dep_extra))
        run.dependents = [{"key": s.old_key, "name": s.name, "was_running": s.was_running} for s in dep_swaps]
        self.save("dependents")
        if dep_swaps:
            self.log("Dependents sharing its network: " + ", ".join(s.name for s in dep_swaps))

        # stop, rename, create, start
        self._replace(main, first=True)
        self.log(f"Config kept: {len(body.get('Env') or [])} env, {len(body.get('Labels') or {})} labels, "
                 f"{len((body.get('HostConfig') or {}).get('Binds') or [])} binds, {len(extra) + (1 if body.get('NetworkingConfig') else 0)} networks")

        # health gate
        if main.was_running:
            self.stage(RunStage.HEALTH, f"Health gate (grace {settings.DOCKMON_UPDATE_GRACE_SECONDS:g}s, timeout {self.health_timeout}s)")
            self._health_gate(main)
        else:
            self.log("The container was stopped before the update: it stays stopped (no health gate).")

        # dependents
        if dep_swaps:
            self.stage(RunStage.DEPENDENTS, f"Recreating {len(dep_swaps)} dependent container(s)")
            for dep in dep_swaps:
                dep.body.setdefault("HostConfig", {})["NetworkMode"] = f"container:{main.new_id}"
                self.swaps.append(dep)
                self._replace(dep, first=False)
                if dep.was_running:
                    self._health_gate(dep)

        # cleanup
        self.stage(RunStage.CLEANUP, "Removing the backup container(s)")
        for swap in reversed(self.swaps):
            try:
                engine.remove(self.client, swap.old_id, force=True)
                self.log(f"Removed the backup {swap.backup}")
            except engine.ContainerGone:
                pass
            except engine.EngineError as exc:
                # The update itself succeeded; repair() resolves a backup left behind.
                self.log(f"Could not remove the backup {swap.backup}: {exc}")
        if not main.committed:
            self._commit(main)
        self._prune_images()
        self._mark_current(main.new_key)
        self.finish(RunStatus.SUCCEEDED)
        took = sum(run.timings.values())
        self.emit("update.succeeded", f"{run.container_name} was updated to {run.image} ({(run.to_digest or run.to_image_id)[:19]})",
                  seconds=round(took, 1))

    def _replace(self, swap: _Swap, *, first: bool) -> None:
        run = self.run
        if swap.was_running:
            if first:
                self.stage(RunStage.STOP, f"Stopping {swap.name}")
            timeout = (swap.body.get("StopTimeout") if swap.body.get("StopTimeout") is not None else settings.DOCKMON_UPDATE_STOP_TIMEOUT)
            self._call(f"Stopping {swap.name}", engine.operate, self.client, swap.old_id, "stop", timeout=int(timeout))
            swap.stopped = True
        if first:
            self.stage(RunStage.RENAME, "Keeping the old container as a backup")
        swap.backup = backup_name(swap.name, run.pk)
        if first:
            run.backup_name = swap.backup
            self.save("backup_name")  # before the rename: repair finds the backup by this name
        self._call(f"Renaming {swap.name}", engine.rename, self.client, swap.old_id, swap.backup)
        swap.renamed = True
        self.log(f"{swap.name} → {swap.backup}")
        if first:
            self.stage(RunStage.CREATE, f"Creating the new {swap.name}")
        swap.new_id = self._call(f"Creating the new {swap.name}", engine.create_from_spec, self.client, swap.name, swap.body)
        if first:
            run.new_container_id = swap.new_id
            self.save("new_container_id")
        for network, endpoint in swap.extra:
            self._call(f"Connecting the new {swap.name} to {network}", engine.connect_network, self.client, network, swap.new_id, endpoint)
        self.log(f"Created {swap.name} ({swap.new_id[:12]})")
        self._commit(swap)
        if swap.was_running:
            if first:
                self.stage(RunStage.START, f"Starting the new {swap.name}")
            self._call(f"Starting the new {swap.name}", engine.operate, self.client, swap.new_id, "start")

    def _commit(self, swap: _Swap) -> None:
        """Move every record of the old key to the new container, in one transaction.

        This is past the commitment point: the engine now holds the new container whatever the
        database says, so a failure here is logged and left to repair, never raised."""
        run = self.run
        try:
            with transaction.atomic():
                new_row = _sync(self.host.pk, self.client, swap.new_id)
                old_row = Container.objects.select_for_update().get(pk=swap.old_key)
                if old_row.replaced_by == new_row.key:
                    pass  # the monitor saw the create first and followed it (compose slot)
                elif old_row.replaced_by:
                    self.log(f"{old_row.key} was already marked as replaced by {old_row.replaced_by}; records not moved")
                else:
                    container_services.rekey(old_row, new_row, actor=run.requested_by, reason="updated")
                # The stop the update did is not a person's wish: the new container wants what the old one did.
                Container.objects.filter(pk=new_row.pk).update(desired_state=swap.desired_state)
            swap.new_key, swap.committed = new_row.key, True
            if swap is self.swaps[0]:
                run.new_key, run.committed = new_row.key, True
                self.save("new_key", "committed")
            self.log(f"Records moved {swap.old_key} → {new_row.key}")
        except Exception as exc:
            logger.exception("update run %s: moving the records failed", run.pk)
            self.log(f"Moving the records to the new container failed ({exc}); they are repaired later")

    def _health_gate(self, swap: _Swap) -> None:
        from healthchecks.models import HealthCheck

        deadline = time.monotonic() + settings.DOCKMON_UPDATE_GRACE_SECONDS
        ran_once = False
        while True:
            data = self._call("Inspecting the new container", engine.inspect_raw, self.client, swap.new_id)
            verdict = _judge_running(data)
            if verdict is True:
                self.log(f"{swap.name} ran once and exited 0 (restart policy {_restart_policy(data) or 'no'}): a one-shot success")
                return
            if verdict:
                raise StageFailed(f"The new {swap.name} {verdict}")
            if ran_once and time.monotonic() >= deadline:
                break
            ran_once = True
            self.progress(None, "grace period")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())) or 0.05)
        self.log(f"{swap.name} is running after the grace period")
        health_deadline = time.monotonic() + self.health_timeout
        if (data.get("State") or {}).get("Health"):
            self.log("Waiting for the Docker HEALTHCHECK to report healthy")
            while True:
                health = (data.get("State") or {}).get("Health") or {}
                status = health.get("Status")
                if status == "healthy":
                    self.log("Docker HEALTHCHECK: healthy")
                    break
                if status == "unhealthy":
                    raise StageFailed(f"The new {swap.name}'s HEALTHCHECK reported unhealthy: {_last_health_output(health)}")
                verdict = _judge_running(data)
                if verdict:
                    raise StageFailed(f"The new {swap.name} {verdict if verdict is not True else 'exited during its health check'}")
                if time.monotonic() >= health_deadline:
                    raise StageFailed(f"The new {swap.name}'s HEALTHCHECK did not report healthy within {self.health_timeout}s "
                                      f"(status {status}): {_last_health_output(health)}")
                self.progress(None, f"health: {status}")
                time.sleep(0.5)
                data = self._call("Inspecting the new container", engine.inspect_raw, self.client, swap.new_id)
        checks = list(HealthCheck.objects.filter(container_id=swap.new_key, enabled=True)) if swap.new_key else []
        for check in checks:
            self._http_gate(swap, check, health_deadline)

    def _http_gate(self, swap: _Swap, check, deadline: float) -> None:
        from healthchecks.probe import ProbeSpec, probe
        from healthchecks.services import body_limit

        self.log(f"DockMon HTTP check {check.name or check.url} must pass")
        last = None
        while True:
            last = probe(ProbeSpec.for_check(check, body_limit=body_limit()))
            if last.ok:
                self.log(f"HTTP check passed ({last.status_code}, {last.response_ms} ms)")
                return
            data = self._call("Inspecting the new container", engine.inspect_raw, self.client, swap.new_id)
            verdict = _judge_running(data)
            if verdict and verdict is not True:
                raise StageFailed(f"The new {swap.name} {verdict}")
            if time.monotonic() >= deadline:
                raise StageFailed(f"The DockMon HTTP check {check.url} did not pass within {self.health_timeout}s: "
                                  f"{last.error or last.status_code}")
            self.progress(None, f"HTTP check: {last.error or last.status_code}")
            time.sleep(min(1.0, max(0.1, check.interval_seconds / 10)))

    # --- failure and rollback ----------------------------------------------------------
    def _fail(self, reason: str) -> None:
        run = self.run
        self.log(f"FAILED: {reason}")
        changed = any(s.stopped or s.renamed or s.new_id for s in self.swaps)
        if not changed:
            self.finish(RunStatus.FAILED, reason)
            self.emit("update.failed", f"Update of {run.container_name} failed: {reason}", Severity.ERROR)
            return
        self.stage(RunStage.ROLLBACK, "Rolling back")
        problems = []
        # New containers go first (dependents before the one whose network they use), then the
        # originals come back in order (the network's owner first, so dependents can join it).
        for swap in reversed(self.swaps):
            problems += self._remove_new(swap)
        for swap in self.swaps:
            problems += self._undo(swap)
        if run.to_digest and self.swaps:
            try:
                RolledBackDigest.objects.get_or_create(container_id=self.swaps[0].old_key, digest=run.to_digest,
                                                       defaults={"run": run, "reason": reason[:2000]})
            except Exception:
                logger.exception("could not remember the rolled-back digest")
        self._restore_update_row()
        if problems:
            text = f"{reason} — and the rollback had problems: {'; '.join(problems)}"
            self.finish(RunStatus.FAILED, text)
            self.emit("update.failed", f"Update of {run.container_name} failed and could not be fully rolled back: {text}", Severity.CRITICAL)
            return
        self.rolled_back = True
        self.finish(RunStatus.ROLLED_BACK, reason)
        self.emit("update.rolled_back", f"Update of {run.container_name} was rolled back: {reason}", Severity.WARNING)

    def _remove_new(self, swap: _Swap) -> list[str]:
        if not swap.new_id or swap.new_removed:
            return []
        try:
            engine.remove(self.client, swap.new_id, force=True)
            self.log(f"Removed the new {swap.name} ({swap.new_id[:12]})")
        except engine.ContainerGone:
            pass
        except engine.EngineError as exc:
            return [f"could not remove the new {swap.name}: {exc}"]
        swap.new_removed = True
        return []

    def _undo(self, swap: _Swap) -> list[str]:
        problems = self._remove_new(swap)
        if swap.renamed and not problems:
            try:
                engine.rename(self.client, swap.old_id, swap.name)
                swap.renamed = False
                self.log(f"{swap.backup} → {swap.name}")
            except engine.EngineError as exc:
                problems.append(f"could not rename {swap.backup} back to {swap.name}: {exc}")
        if swap.stopped and swap.was_running and not problems:
            try:
                engine.operate(self.client, swap.old_id, "start")
                self.log(f"Started the original {swap.name} again")
            except engine.EngineError as exc:
                problems.append(f"could not start the original {swap.name}: {exc}")
        if not problems:
            restore_records(self.host.pk, self.client, swap.old_id, swap.new_key if swap.committed else "",
                            swap.desired_state, log=self.log)
            if swap is self.swaps[0]:
                self.run.committed = False
        return problems

    def _restore_update_row(self) -> None:
        if not self.update_snapshot or not self.swaps:
            return
        ContainerUpdate.objects.filter(container_id=self.swaps[0].old_key).update(**self.update_snapshot)

    # --- after success -----------------------------------------------------------------
    def _mark_current(self, key: str) -> None:
        run = self.run
        if not key:
            return
        values = {"image": run.image, "checked_at": timezone.now()}
        if run.to_digest:
            row = ContainerUpdate.objects.filter(container_id=key).first()
            values["current_digest"] = run.to_digest
            if row is None or not row.latest_digest or row.latest_digest == run.to_digest:
                values.update(status=UpdateStatus.OK, update_available=False, error="", available_since=None,
                              latest_digest=run.to_digest)
        ContainerUpdate.objects.update_or_create(container_id=key, defaults=values)

    def _prune_images(self) -> None:
        """Keep the last N images this container ran before (for a manual rollback); remove older ones."""
        keep = settings.DOCKMON_UPDATE_KEEP_IMAGES
        run = self.run
        previous = list(
            UpdateRun.objects.filter(host_id=run.host_id, container_name=run.container_name, status=RunStatus.SUCCEEDED)
            .exclude(from_image_id="").exclude(from_image_id=run.to_image_id).exclude(pk=run.pk)
            .order_by("-finished_at").values_list("from_image_id", flat=True)
        )
        candidates = list(dict.fromkeys([run.from_image_id, *previous]))[keep:]
        for image_id in candidates:
            try:
                if engine.remove_image(self.client, image_id):
                    self.log(f"Removed the old image {image_id[:19]}")
            except engine.EngineError as exc:
                self.log(f"Could not remove the old image {image_id[:19]}: {exc}")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def _repo_digest(image: dict | None, ref: str) -> str:
    """The registry digest of `image` in `ref`'s repository ("" for a local-only image)."""
    if not image:
        return ""
    try:
        wanted = parse_reference(ref)
    except ValueError:
        return ""
    for item in image.get("RepoDigests") or []:
        try:
            other = parse_reference(item)
        except ValueError:
            continue
        if other.registry == wanted.registry and other.repository == wanted.repository and other.digest:
            return other.digest
    return ""


def _fit_network_mode(body: dict) -> None:
    """A container on another's network namespace cannot set its own host name, ports or DNS."""
    mode = (body.get("HostConfig") or {}).get("NetworkMode") or ""
    if mode.startswith("container:"):
        for name in ("Hostname", "Domainname", "ExposedPorts", "MacAddress"):
            body.pop(name, None)


def _restart_policy(data: dict) -> str:
    return (((data.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "")


def _judge_running(data: dict):
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


def _last_health_output(health: dict) -> str:
    log = health.get("Log") or []
    if not log:
        return "no health check result yet"
    last = log[-1]
    return f"exit {last.get('ExitCode')}: {(last.get('Output') or '').strip()[:300] or 'no output'}"


def _sync(host_id, client, container_id: str) -> Container:
    """The database row of an engine container, created or refreshed from a full inspect.

    The monitor records the same container from its `create` event; whichever inserts second
    finds the other's row."""
    facts = engine.inspect_container(client, container_id)
    try:
        with transaction.atomic():
            return container_services.apply_facts(host_id, facts)
    except IntegrityError:
        return container_services.apply_facts(host_id, facts)


def restore_records(host_id, client, old_id: str, new_key: str, desired_state: str | None, *, log=None) -> None:
    """After a rollback: the original container's row is current again and, when the records had
    moved to the new container, they move back (the new container's row is marked removed).

    desired_state is what the person wanted of the original before the update; None leaves the
    row's own value (a backup resolved by repair still carries it)."""
    try:
        with transaction.atomic():
            old_row = _sync(host_id, client, old_id)
            if new_key:
                new_row = Container.objects.filter(pk=new_key).first()
                if new_row is not None and new_row.key != old_row.key:
                    Container.objects.filter(pk=old_row.pk).update(replaced_by="")
                    old_row.replaced_by = ""
                    container_services.rekey(new_row, old_row, reason="rolled back")
                    # The original is current again: it is nobody's predecessor.
                    Container.objects.filter(pk=old_row.pk).update(replaced_by="")
                    container_services.mark_removed(Container.objects.get(pk=new_row.pk))
            if desired_state is not None:
                Container.objects.filter(pk=old_row.pk).update(desired_state=desired_state)
        if log:
            log(f"Records are on {old_row.key} again")
    except Exception as exc:
        logger.exception("restoring the records of %s failed", old_id)
        if log:
            log(f"Restoring the records failed ({exc}); they are repaired later")


# ---------------------------------------------------------------------------
# Repair after a crash
# ---------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed worker's pool child is orphaned; where PID 1 does not reap (a container without an
    # init), it stays a zombie that signal 0 still reaches. A zombie runs nothing: it is dead.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def worker_dead(run: UpdateRun, *, now=None) -> bool:
    """Whether the worker that claimed `run` is gone: a process of this machine that no longer
    exists, or (any machine) no sign of life for DOCKMON_UPDATE_STALE_SECONDS."""
    now = now or timezone.now()
    host, _, pid = (run.worker or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid():
        if not _pid_alive(int(pid)):
            return True
    beat = run.heartbeat_at or run.started_at or run.created_at
    return (now - beat).total_seconds() > settings.DOCKMON_UPDATE_STALE_SECONDS


def repair(*, host_ids=None) -> dict:
    """Make interrupted updates consistent again; resolve orphaned backups; restart waiting runs.

    Called when a worker starts (celery worker_ready) and periodically. Never deletes a backup
    without recording it on the run and in the event log."""
    summary = {"runs": [], "backups": [], "kicked": []}
    runs = UpdateRun.objects.filter(status=RunStatus.RUNNING).select_related("host", "requested_by")
    if host_ids is not None:
        runs = runs.filter(host_id__in=host_ids)
    for run in runs:
        if worker_dead(run):
            # Only one repairer per run: whoever moves the heartbeat first owns it.
            if UpdateRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at, worker=run.worker).update(
                worker=f"repair@{worker_id()}", heartbeat_at=timezone.now()
            ):
                run.refresh_from_db()
                summary["runs"].append(_repair_run(run))
    # Queued runs whose message was lost (broker restart) go back to waiting.
    stale = timezone.now() - timedelta(seconds=settings.DOCKMON_UPDATE_STALE_SECONDS)
    UpdateRun.objects.filter(status=RunStatus.PENDING, queued_at__lt=stale).update(queued_at=None, slot=None)
    hosts = DockerHost.objects.filter(enabled=True)
    if host_ids is not None:
        hosts = hosts.filter(pk__in=host_ids)
    for host in hosts:
        try:
            summary["backups"] += _resolve_backups(host)
        except engine.EngineError as exc:
            logger.warning("repair: host %s unreachable: %s", host.name, exc)
    for host_id in UpdateRun.objects.filter(status=RunStatus.PENDING, queued_at__isnull=True).values_list("host_id", flat=True).distinct():
        summary["kicked"] += kick(host_id)
    return summary


def _repair_run(run: UpdateRun) -> dict:
    execution = _Execution(run)
    stage = run.stage
    execution.log(f"The worker running this update stopped during the {stage} stage; repairing")
    try:
        client = engine.client_for_host(run.host, timeout=max(settings.DOCKMON_ENGINE_TIMEOUT, 30))
    except engine.EngineError as exc:
        execution.log(f"Host unreachable ({exc}); trying again later")
        UpdateRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.DOCKMON_UPDATE_STALE_SECONDS + 1))
        return {"run": run.pk, "outcome": "host unreachable"}
    execution.client = client
    try:
        return _repair_with(execution, client, stage)
    finally:
        client.close()


def _inspect_or_none(client, container_id: str) -> dict | None:
    if not container_id:
        return None
    try:
        return engine.inspect_raw(client, container_id)
    except engine.ContainerGone:
        return None


def _repair_with(execution: _Execution, client, stage: str) -> dict:
    run = execution.run
    name = run.container_name
    old = _inspect_or_none(client, run.old_container_id)
    named = [c for c in engine.containers_by_name(client, f"^/{re.escape(name)}$") if c["name"] == name]
    new_id = run.new_container_id
    if not new_id:
        # The crash may have come between the create and its record: a container under the
        # original name that is not the old one is the new one.
        others = [c["id"] for c in named if c["id"] != run.old_container_id]
        new_id = others[0] if others else ""
    new = _inspect_or_none(client, new_id)
    desired = ""
    old_row = Container.objects.filter(pk=run.old_key).first()
    if old_row is not None:
        desired = old_row.desired_state

    if old is None and new is not None:
        # The backup is gone already: the update had finished on the engine.
        swap = _Swap(run.old_key, run.old_container_id, name, bool(run.was_running), desired, {}, [], new_id=new_id)
        if not run.committed:
            execution.swaps = [swap]
            execution._commit(swap)
        execution._mark_current(run.new_key)
        execution.log("The old container was already removed: the update is complete")
        execution.finish(RunStatus.SUCCEEDED)
        execution.emit("update.succeeded", f"{name} was updated (completed after a worker crash)", repaired=True)
        return {"run": run.pk, "outcome": "succeeded"}

    if old is not None and new is not None and stage in (RunStage.CLEANUP, RunStage.DONE) and _judge_running(new) in (None, True):
        # It had passed its health gate: finish the cleanup.
        swap = _Swap(run.old_key, run.old_container_id, name, bool(run.was_running), desired, {}, [], new_id=new_id,
                     backup=run.backup_name)
        execution.swaps = [swap]
        if not run.committed:
            execution._commit(swap)
        try:
            engine.remove(client, run.old_container_id, force=True)
            execution.log(f"Removed the backup {run.backup_name} (the new container had passed its health gate)")
        except engine.EngineError as exc:
            execution.log(f"Could not remove the backup: {exc}")
        execution._mark_current(run.new_key)
        execution.finish(RunStatus.SUCCEEDED)
        execution.emit("update.succeeded", f"{name} was updated (completed after a worker crash)", repaired=True)
        return {"run": run.pk, "outcome": "succeeded"}

    if old is None:
        execution.finish(RunStatus.FAILED, f"The worker stopped during {stage} and neither the old nor the new container exists any more.")
        execution.emit("update.failed", f"Update of {name} failed: {run.error}", Severity.ERROR)
        return {"run": run.pk, "outcome": "failed"}

    # Otherwise go back to the original container.
    old_name = (old.get("Name") or "").lstrip("/")
    swap = _Swap(run.old_key, run.old_container_id, name, bool(run.was_running), desired, {}, [],
                 backup=run.backup_name or old_name, renamed=old_name != name,
                 stopped=bool(run.was_running) and not (old.get("State") or {}).get("Running"),
                 new_id=new_id if new is not None else "", new_key=run.new_key, committed=run.committed)
    execution.swaps = [swap]
    changed = swap.renamed or swap.stopped or bool(swap.new_id) or run.committed
    reason = f"The worker running the update stopped during the {stage} stage"
    if not changed:
        execution.finish(RunStatus.FAILED, f"{reason}; nothing had been changed.")
        execution.emit("update.failed", f"Update of {name} failed: {run.error}", Severity.WARNING)
        return {"run": run.pk, "outcome": "failed"}
    execution.stage(RunStage.ROLLBACK, "Rolling back to the original container")
    problems = execution._undo(swap)
    if problems:
        execution.finish(RunStatus.FAILED, f"{reason}; the repair had problems: {'; '.join(problems)}")
        execution.emit("update.failed", f"Update of {name} could not be repaired: {run.error}", Severity.CRITICAL)
        return {"run": run.pk, "outcome": "failed"}
    execution.rolled_back = True
    execution.finish(RunStatus.ROLLED_BACK, f"{reason}; the original container was restored.")
    execution.emit("update.rolled_back", f"Update of {name} was rolled back after a worker crash", Severity.WARNING, repaired=True)
    return {"run": run.pk, "outcome": "rolled_back"}


def _resolve_backups(host: DockerHost) -> list[dict]:
    """Backups (`<name>-dockmon-backup-<run>`) whose run is over: give them their name back when
    it is free, remove them (with a record) when the run succeeded, report them otherwise."""
    client = engine.client_for_host(host)
    results = []
    try:
        for item in engine.containers_by_name(client, BACKUP_SUFFIX):
            match = BACKUP_NAME.match(item["name"])
            if not match:
                continue
            run = UpdateRun.objects.filter(pk=int(match["run"]), host=host).first()
            if run is not None and run.status in ACTIVE_RUN_STATUSES:
                continue  # its run is under way (or waits for repair() above)
            name = match["name"]
            taken = [c for c in engine.containers_by_name(client, f"^/{re.escape(name)}$") if c["name"] == name]
            outcome = _resolve_one(host, client, item, name, run, taken)
            results.append({"backup": item["name"], "outcome": outcome})
    finally:
        client.close()
    return results


def _resolve_one(host, client, item: dict, name: str, run: UpdateRun | None, taken: list) -> str:
    def note(text: str, severity=Severity.WARNING, type_="update.backup") -> None:
        from containers.models import Event

        key = f"{host.pk}:{item['id'][:12]}"
        if Event.objects.filter(type=type_, container_key=key, message=text).exists():
            return  # said once is enough (repair runs every few minutes)
        if run is not None:
            line = f"{timezone.now():%Y-%m-%d %H:%M:%S} [repair] {text}"
            UpdateRun.objects.filter(pk=run.pk).update(log=(run.log + "\n" + line)[-100_000:])
        bus.emit(type_, category=EventCategory.UPDATE, severity=severity, host=host.pk, container=key,
                 message=text, data={"run": run.pk if run else None, "backup": item["name"], "name": name})

    if not taken:
        engine.rename(client, item["id"], name)
        was_running = run.was_running if run is not None else False
        if was_running:
            engine.operate(client, item["id"], "start")
        # The backup's row still holds what the person wanted of it (desired state): keep it.
        restore_records(host.pk, client, item["id"], "", None)
        note(f"Orphaned backup {item['name']} got its name {name} back" + (" and was started" if was_running else ""))
        return "restored"
    if run is not None and run.status == RunStatus.SUCCEEDED and all(c["state"] == "running" for c in taken) == bool(run.was_running):
        engine.remove(client, item["id"], force=True)
        note(f"Removed the backup {item['name']}: its update had succeeded and {name} runs the new release", Severity.INFO)
        return "removed"
    note(f"Kept the backup {item['name']}: {name} exists, so it cannot get its name back; remove or rename it by hand")
    return "kept"
