"""Crash repair: make updates whose worker died consistent again.

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
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from containers import bus, engine
from containers.choices import EventCategory, Severity
from containers.engine import facts as engine_facts
from containers.engine import lifecycle as engine_lifecycle
from containers.engine import recreate as engine_recreate
from containers.models import Container, DockerHost
from updates.choices import ACTIVE_RUN_STATUSES, RunStage, RunStatus
from updates.executor import BACKUP_SUFFIX, Execution, Swap, restore_records, worker_id
from updates.gates import judge_running
from updates.models import UpdateRun
from updates.runqueue import kick

logger = logging.getLogger(__name__)

BACKUP_NAME = re.compile(rf"^(?P<name>.+){re.escape(BACKUP_SUFFIX)}(?P<run>\d+)$")


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
    execution = Execution(run)
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
        return engine_recreate.inspect_raw(client, container_id)
    except engine.ContainerGone:
        return None


def _repair_with(execution: Execution, client, stage: str) -> dict:
    run = execution.run
    name = run.container_name
    old = _inspect_or_none(client, run.old_container_id)
    named = [c for c in engine_facts.containers_by_name(client, f"^/{re.escape(name)}$") if c["name"] == name]
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
        swap = Swap(run.old_key, run.old_container_id, name, bool(run.was_running), desired, {}, [], new_id=new_id)
        if not run.committed:
            execution.swaps = [swap]
            execution.commit(swap)
        execution.mark_current(run.new_key)
        execution.log("The old container was already removed: the update is complete")
        execution.finish(RunStatus.SUCCEEDED)
        execution.emit("update.succeeded", f"{name} was updated (completed after a worker crash)", repaired=True)
        return {"run": run.pk, "outcome": "succeeded"}

    if old is not None and new is not None and stage in (RunStage.CLEANUP, RunStage.DONE) and judge_running(new) in (None, True):
        # It had passed its health gate: finish the cleanup.
        swap = Swap(run.old_key, run.old_container_id, name, bool(run.was_running), desired, {}, [], new_id=new_id,
                     backup=run.backup_name)
        execution.swaps = [swap]
        if not run.committed:
            execution.commit(swap)
        try:
            engine_lifecycle.remove(client, run.old_container_id, force=True)
            execution.log(f"Removed the backup {run.backup_name} (the new container had passed its health gate)")
        except engine.EngineError as exc:
            execution.log(f"Could not remove the backup: {exc}")
        execution.mark_current(run.new_key)
        execution.finish(RunStatus.SUCCEEDED)
        execution.emit("update.succeeded", f"{name} was updated (completed after a worker crash)", repaired=True)
        return {"run": run.pk, "outcome": "succeeded"}

    if old is None:
        execution.finish(RunStatus.FAILED, f"The worker stopped during {stage} and neither the old nor the new container exists any more.")
        execution.emit("update.failed", f"Update of {name} failed: {run.error}", Severity.ERROR)
        return {"run": run.pk, "outcome": "failed"}

    # Otherwise go back to the original container.
    old_name = (old.get("Name") or "").lstrip("/")
    swap = Swap(run.old_key, run.old_container_id, name, bool(run.was_running), desired, {}, [],
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
    problems = execution.undo(swap)
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
        for item in engine_facts.containers_by_name(client, BACKUP_SUFFIX):
            match = BACKUP_NAME.match(item["name"])
            if not match:
                continue
            run = UpdateRun.objects.filter(pk=int(match["run"]), host=host).first()
            if run is not None and run.status in ACTIVE_RUN_STATUSES:
                continue  # its run is under way (or waits for repair() above)
            name = match["name"]
            taken = [c for c in engine_facts.containers_by_name(client, f"^/{re.escape(name)}$") if c["name"] == name]
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
        engine_lifecycle.rename(client, item["id"], name)
        was_running = run.was_running if run is not None else False
        if was_running:
            engine_lifecycle.operate(client, item["id"], "start")
        # The backup's row still holds what the person wanted of it (desired state): keep it.
        restore_records(host.pk, client, item["id"], "", None)
        note(f"Orphaned backup {item['name']} got its name {name} back" + (" and was started" if was_running else ""))
        return "restored"
    if run is not None and run.status == RunStatus.SUCCEEDED and all(c["state"] == "running" for c in taken) == bool(run.was_running):
        engine_lifecycle.remove(client, item["id"], force=True)
        note(f"Removed the backup {item['name']}: its update had succeeded and {name} runs the new release", Severity.INFO)
        return "removed"
    note(f"Kept the backup {item['name']}: {name} exists, so it cannot get its name back; remove or rename it by hand")
    return "kept"
