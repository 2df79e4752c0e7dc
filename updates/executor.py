"""The update executor: recreate a container on a new image, health-gate it, roll back on failure.

One run (an UpdateRun row) goes through these stages, each published live as `update.progress`
and kept on the row with its timing:

  validate   the container exists and is not being updated, the requester may `update` it,
             the policy allows it (warn needs force; block and DockMon itself never)
  pull       the image reference, with byte progress
  inspect    the full configuration (engine_recreate.recreate_spec) and the dependents sharing its network
  stop       the old container (when it runs)
  rename     the old container becomes `<name>-dockmon-backup-<run>` (the way back)
  create     a new container with the original name and the whole configuration; right after,
             every record of the old key moves to the new one in one transaction (the commitment
             point: from here the database follows the engine, a DB error is logged and repaired)
  start      when the old one was running (a stopped container stays stopped)
  health     running after a grace period; a Docker HEALTHCHECK must turn healthy and DockMon's
             HTTP checks of the container must pass within the timeout; a one-shot container
             that exits 0 with restart `no`/`on-failure` passes (updates.gates)
  dependents containers with `network_mode: container:<this>` are recreated onto the new one
  cleanup    the backup is removed; old images beyond the last N kept are removed
Any failure after the stop rolls back: the new container is removed, the backup gets its name
back and its running state, the records move back, and the digest is remembered so auto-update
does not try it again.

Runs are requested and queued in updates.runqueue; a run whose worker died is finished or rolled
back by updates.crash_repair.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from containers import bus, engine
from containers import services as container_services
from containers.choices import EventCategory, Severity
from containers.engine import facts as engine_facts
from containers.engine import images as engine_images
from containers.engine import lifecycle as engine_lifecycle
from containers.engine import recreate as engine_recreate
from containers.models import Container
from updates.choices import RunStage, RunStatus, RunTrigger, UpdateStatus
from updates.gates import GateFailed, health_gate
from updates.models import ContainerUpdate, RolledBackDigest, UpdateRun
from updates.registry import parse_reference
from updates.runqueue import RunRefused, check_allowed, kick

logger = logging.getLogger(__name__)

BACKUP_SUFFIX = "-dockmon-backup-"
_PERCENT = {
    RunStage.VALIDATE: 2, RunStage.PULL: 5, RunStage.INSPECT: 52, RunStage.STOP: 58, RunStage.RENAME: 62,
    RunStage.CREATE: 66, RunStage.START: 72, RunStage.HEALTH: 76, RunStage.DEPENDENTS: 90, RunStage.CLEANUP: 95,
    RunStage.ROLLBACK: 95, RunStage.DONE: 100,
}


class StageFailed(Exception):
    """The update cannot go on; everything changed so far is rolled back."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backup_name(name: str, run_id: int) -> str:
    return f"{name}{BACKUP_SUFFIX}{run_id}"


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
        Execution(run).go()
    finally:
        kick(run.host_id)
    run.refresh_from_db()
    return run


@dataclass
class Swap:
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


class Execution:
    """One run from its claim to its end; crash repair reuses its bookkeeping and rollback."""

    def __init__(self, run: UpdateRun):
        self.run = run
        self.host = run.host
        self.client = None
        self.stage_started = time.monotonic()
        self.lines: list[str] = [run.log] if run.log else []
        self.swaps: list[Swap] = []
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
        except (StageFailed, GateFailed) as exc:
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
        old = self._call("Inspecting the container", engine_recreate.inspect_raw, self.client, container.container_id)
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
        old_image = engine_images.inspect_image_raw(self.client, run.from_image_id) if run.from_image_id else None
        run.from_digest = (row.current_digest if row and row.current_digest else "") or _repo_digest(old_image, run.image)
        self.save("was_running", "old_container_id", "from_image_id", "image", "from_digest")
        self.emit("update.started", f"Update of {run.container_name} started ({run.image})",
                  timeout_seconds=self.health_timeout + settings.DOCKMON_UPDATE_PULL_TIMEOUT)
        # Subscribers run after the event (containers/bus.py): let them mark the container (the
        # alerts app holds back its alerts during the update) before anything is stopped.
        bus.drain(bus.SHUTDOWN_WAIT_SECONDS)

        # pull
        self.stage(RunStage.PULL, f"Pulling {run.image}")

        def on_progress(done, total, status):
            if total:
                self.progress(5 + int(45 * done / total), f"{status} {done}/{total} bytes")

        run.to_image_id = self._call(f"Pulling {run.image}", engine_images.pull, self.client, run.image, on_progress,
                                     timeout=settings.DOCKMON_UPDATE_PULL_TIMEOUT)
        new_image = engine_images.inspect_image_raw(self.client, run.to_image_id)
        run.to_digest = _repo_digest(new_image, run.image)
        self.save("to_image_id", "to_digest")
        self.log(f"Pulled {run.image}: {run.to_image_id[:19]} ({run.to_digest or 'no registry digest'})")
        if run.to_image_id == run.from_image_id:
            self.log("The container already runs this image: nothing to do.")
            self.mark_current(container.pk)
            self.finish(RunStatus.SUCCEEDED)
            self.emit("update.succeeded", f"{run.container_name} is already up to date ({run.image})", up_to_date=True)
            return
        if run.trigger == RunTrigger.AUTO and run.to_digest and RolledBackDigest.objects.filter(container_id=container.pk, digest=run.to_digest).exists():
            raise StageFailed(f"{run.to_digest[:19]} was rolled back on this container before; auto-update does not retry it.")

        # inspect
        self.stage(RunStage.INSPECT, "Reading the configuration")
        body, extra = engine_recreate.recreate_spec(old, old_image, run.image)
        _fit_network_mode(body)
        main = Swap(container.pk, old["Id"], run.container_name, run.was_running, container.desired_state, body, extra)
        self.swaps.append(main)
        dependents = self._call("Looking for dependent containers", engine_recreate.dependents_sharing_network, self.client, old["Id"])
        dep_swaps = []
        for dep_id in dependents:
            dep = self._call("Inspecting a dependent container", engine_recreate.inspect_raw, self.client, dep_id)
            dep_image = engine_images.inspect_image_raw(self.client, dep.get("Image") or "")
            dep_body, dep_extra = engine_recreate.recreate_spec(dep, dep_image, (dep.get("Config") or {}).get("Image") or dep.get("Image"))
            _fit_network_mode(dep_body)
            dep_row = Container.objects.filter(pk=f"{self.host.pk}:{dep_id[:12]}").first()
            dep_swaps.append(Swap(f"{self.host.pk}:{dep_id[:12]}", dep_id, dep["Name"].lstrip("/"), bool((dep.get("State") or {}).get("Running")),
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
            health_gate(self, main)
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
                    health_gate(self, dep)

        # cleanup
        self.stage(RunStage.CLEANUP, "Removing the backup container(s)")
        for swap in reversed(self.swaps):
            try:
                engine_lifecycle.remove(self.client, swap.old_id, force=True)
                self.log(f"Removed the backup {swap.backup}")
            except engine.ContainerGone:
                pass
            except engine.EngineError as exc:
                # The update itself succeeded; repair() resolves a backup left behind.
                self.log(f"Could not remove the backup {swap.backup}: {exc}")
        if not main.committed:
            self.commit(main)
        self._prune_images()
        self.mark_current(main.new_key)
        self.finish(RunStatus.SUCCEEDED)
        took = sum(run.timings.values())
        self.emit("update.succeeded", f"{run.container_name} was updated to {run.image} ({(run.to_digest or run.to_image_id)[:19]})",
                  seconds=round(took, 1))

    def _replace(self, swap: Swap, *, first: bool) -> None:
        run = self.run
        if swap.was_running:
            if first:
                self.stage(RunStage.STOP, f"Stopping {swap.name}")
            timeout = (swap.body.get("StopTimeout") if swap.body.get("StopTimeout") is not None else settings.DOCKMON_UPDATE_STOP_TIMEOUT)
            self._call(f"Stopping {swap.name}", engine_lifecycle.operate, self.client, swap.old_id, "stop", timeout=int(timeout))
            swap.stopped = True
        if first:
            self.stage(RunStage.RENAME, "Keeping the old container as a backup")
        swap.backup = backup_name(swap.name, run.pk)
        if first:
            run.backup_name = swap.backup
            self.save("backup_name")  # before the rename: repair finds the backup by this name
        self._call(f"Renaming {swap.name}", engine_lifecycle.rename, self.client, swap.old_id, swap.backup)
        swap.renamed = True
        self.log(f"{swap.name} → {swap.backup}")
        if first:
            self.stage(RunStage.CREATE, f"Creating the new {swap.name}")
        swap.new_id = self._call(f"Creating the new {swap.name}", engine_recreate.create_from_spec, self.client, swap.name, swap.body)
        if first:
            run.new_container_id = swap.new_id
            self.save("new_container_id")
        for network, endpoint in swap.extra:
            self._call(f"Connecting the new {swap.name} to {network}", engine_recreate.connect_network, self.client, network, swap.new_id, endpoint)
        self.log(f"Created {swap.name} ({swap.new_id[:12]})")
        self.commit(swap)
        if swap.was_running:
            if first:
                self.stage(RunStage.START, f"Starting the new {swap.name}")
            self._call(f"Starting the new {swap.name}", engine_lifecycle.operate, self.client, swap.new_id, "start")

    def commit(self, swap: Swap) -> None:
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
            problems += self.undo(swap)
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

    def _remove_new(self, swap: Swap) -> list[str]:
        if not swap.new_id or swap.new_removed:
            return []
        try:
            engine_lifecycle.remove(self.client, swap.new_id, force=True)
            self.log(f"Removed the new {swap.name} ({swap.new_id[:12]})")
        except engine.ContainerGone:
            pass
        except engine.EngineError as exc:
            return [f"could not remove the new {swap.name}: {exc}"]
        swap.new_removed = True
        return []

    def undo(self, swap: Swap) -> list[str]:
        problems = self._remove_new(swap)
        if swap.renamed and not problems:
            try:
                engine_lifecycle.rename(self.client, swap.old_id, swap.name)
                swap.renamed = False
                self.log(f"{swap.backup} → {swap.name}")
            except engine.EngineError as exc:
                problems.append(f"could not rename {swap.backup} back to {swap.name}: {exc}")
        if swap.stopped and swap.was_running and not problems:
            try:
                engine_lifecycle.operate(self.client, swap.old_id, "start")
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
    def mark_current(self, key: str) -> None:
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
                if engine_images.remove_image(self.client, image_id):
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


def _sync(host_id, client, container_id: str) -> Container:
    """The database row of an engine container, created or refreshed from a full inspect.

    The monitor records the same container from its `create` event; whichever inserts second
    finds the other's row."""
    facts = engine_facts.inspect_container(client, container_id)
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
