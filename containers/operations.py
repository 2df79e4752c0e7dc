"""Container operations (start, stop, ..., rename, remove), one at a time or in bulk.

Each operation is permission-checked by the caller (API, admin, UI), runs against the engine
with a timeout, records the container's fresh state at once (the monitor's event for the same
change is then a no-op), keeps what the person wanted as `desired_state` (so a stop on purpose
is never mistaken for a crash), and is written to the event log with who did it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts import audit
from containers import bus, engine, services
from containers.choices import BulkItemStatus, BulkJobStatus, DesiredState, EventCategory, Severity
from containers.engine import facts as engine_facts
from containers.engine import lifecycle as engine_lifecycle
from containers.models import BulkJob, BulkJobItem, Container

logger = logging.getLogger(__name__)

_DESIRED = {
    "start": DesiredState.RUNNING,
    "restart": DesiredState.RUNNING,
    "unpause": DesiredState.RUNNING,
    "stop": DesiredState.STOPPED,
    "kill": DesiredState.STOPPED,
    "pause": DesiredState.STOPPED,
}
BULK_ACTIONS = (*engine_lifecycle.OPERATIONS, "remove")


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
        facts = engine_facts.inspect_container(client, container.container_id)
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
        data=container.event_data(action=action, **data),
    )


def _check_present(container: Container) -> None:
    if container.removed_at is not None:
        raise OperationError(f"{container.name} was removed from {container.host.name}.", 404)


def run(container: Container, action: str, *, user=None, timeout: int | None = None, signal: str | None = None,
        engine_timeout: float | None = None) -> Container:
    """Start/stop/restart/kill/pause/unpause one container. Raises OperationError.

    `timeout` is a stop's grace period; `engine_timeout` how long to wait for the engine's answer
    (default DOCKMON_ENGINE_TIMEOUT; a stop waits its grace period on top)."""
    _check_present(container)
    client = engine.client_for_host(container.host, timeout=engine_timeout)
    try:
        try:
            engine_lifecycle.operate(client, container.container_id, action, timeout=timeout, signal=signal)
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
            engine_lifecycle.rename(client, container.container_id, name)
        except engine.EngineError as exc:
            raise _fail(container, exc) from exc
        container = _refresh(client, container)
    finally:
        client.close()
    _log(container, "rename", user, f"{old_name} → {name}", ok=True, old_name=old_name)
    return container


def remove(container: Container, *, user=None, force: bool = False, volumes: bool = False, engine_timeout: float | None = None) -> Container:
    _check_present(container)
    client = engine.client_for_host(container.host, timeout=engine_timeout)
    try:
        try:
            engine_lifecycle.remove(client, container.container_id, force=force, volumes=volumes)
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


# ---------------------------------------------------------------------------
# Bulk: one action over many containers
# ---------------------------------------------------------------------------
# check(container) -> None when the item may go ahead, else (http status, error) to report.
BULK_ENGINE_TIMEOUT = 60.0
Check = Callable[[Container], "tuple[int, str] | None"]


def _one(key: str, action: str, user, options: dict, check: Check) -> BulkResult:
    close_old_connections()
    try:
        container = Container.objects.select_related("host").filter(pk=key).first()
        refusal = (404, "Not found.") if container is None else check(container)
        if refusal is not None:
            return BulkResult(key=key, ok=False, error=refusal[1], status=refusal[0])
        # A bulk run keeps the engine busy with many calls at once, so each one may take longer
        # than a lone call would: wait for the answer rather than report a done job as failed.
        patience = max(settings.DOCKMON_ENGINE_TIMEOUT, BULK_ENGINE_TIMEOUT)
        try:
            if action == "remove":
                result = remove(container, user=user, force=options.get("force", False), volumes=options.get("volumes", False),
                                engine_timeout=patience)
            else:
                result = run(container, action, user=user, timeout=options.get("timeout"), engine_timeout=patience)
        except OperationError as exc:
            return BulkResult(key=key, ok=False, error=str(exc), status=exc.status)
        return BulkResult(key=key, ok=True, state=result.state)
    except Exception as exc:  # one broken item must not sink the others
        logger.exception("bulk %s failed for %s", action, key)
        return BulkResult(key=key, ok=False, error=f"Internal error: {exc.__class__.__name__}", status=500)
    finally:
        close_old_connections()


class _PerHostQueue:
    """Hands out keys so that no engine has more than `per_host` operations in flight, taking
    hosts in turn so one big host does not hold back the others."""

    def __init__(self, keys: list[str], per_host: int):
        self._queues: dict[str, deque[str]] = {}
        for key in keys:
            self._queues.setdefault(key.split(":", 1)[0], deque()).append(key)
        self._order = deque(self._queues)
        self._busy = dict.fromkeys(self._queues, 0)
        self._per_host = per_host
        self._cond = threading.Condition()

    def take(self) -> str | None:
        """The next key whose host has room; waits while every host with work is full; None when
        nothing is left to hand out."""
        with self._cond:
            while True:
                if not self._order:
                    return None
                for _ in range(len(self._order)):
                    host = self._order[0]
                    self._order.rotate(-1)
                    if self._busy[host] < self._per_host:
                        key = self._queues[host].popleft()
                        self._busy[host] += 1
                        if not self._queues[host]:
                            self._order.remove(host)
                        return key
                self._cond.wait()

    def done(self, key: str) -> None:
        with self._cond:
            self._busy[key.split(":", 1)[0]] -= 1
            self._cond.notify_all()


def bulk(keys: list[str], action: str, *, user=None, options: dict | None = None, allowed=None, check: Check | None = None,
         per_host: int | None = None, workers: int | None = None, on_result: Callable[[BulkResult], None] | None = None) -> list[BulkResult]:
    """Run one action over many containers, at most `per_host` at a time on any one engine
    (DOCKMON_BULK_CONCURRENCY) and `workers` in all (DOCKMON_BULK_WORKERS). Results come back
    in the order of `keys`; `on_result` is called (from a worker thread) as each one finishes.

    `check(container)` refuses an item with (status, error); `allowed(container) -> bool` is the
    short form: a refused item is reported exactly like a missing one, so nothing leaks."""
    options = options or {}
    keys = list(dict.fromkeys(keys))
    if check is None:
        allowed = allowed or (lambda c: True)

        def check(container):
            return None if allowed(container) else (404, "Not found.")

    per_host = per_host or settings.DOCKMON_BULK_CONCURRENCY
    workers = min(workers or settings.DOCKMON_BULK_WORKERS, len(keys))
    queue = _PerHostQueue(keys, per_host)
    results: dict[str, BulkResult] = {}
    lock = threading.Lock()

    def work() -> None:
        try:
            while (key := queue.take()) is not None:
                try:
                    result = _one(key, action, user, options, check)
                finally:
                    queue.done(key)
                with lock:
                    results[key] = result
                if on_result is not None:
                    try:
                        on_result(result)
                    except Exception:
                        logger.exception("bulk %s: recording the result of %s failed", action, key)
        finally:
            connection.close()  # this thread's own connection; the thread ends here

    threads = [threading.Thread(target=work, name=f"bulk-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[key] for key in keys]


# ---------------------------------------------------------------------------
# Bulk jobs: a bulk run recorded item by item, inline or in a Celery worker
# ---------------------------------------------------------------------------
def create_job(keys: list[str], action: str, *, user, options: dict, background: bool | None = None) -> BulkJob:
    """Record a job and run it: inside this call for a small selection, else in a worker (the
    task is queued once the surrounding transaction commits)."""
    keys = list(dict.fromkeys(keys))
    if background is None:
        background = len(keys) > settings.DOCKMON_BULK_INLINE_MAX
    job = BulkJob.objects.create(action=action, options=options, user=user if getattr(user, "pk", None) else None,
                                 total=len(keys), background=background)
    BulkJobItem.objects.bulk_create([BulkJobItem(job=job, position=i, key=key) for i, key in enumerate(keys)])
    if background:
        from containers import tasks

        queue = {"queue": settings.DOCKMON_BULK_QUEUE} if settings.DOCKMON_BULK_QUEUE else {}
        transaction.on_commit(lambda: tasks.run_bulk_job.apply_async((str(job.pk),), **queue))
        return job
    return execute_job(job.pk) or job


def _job_checker(user, keys: list[str]) -> Check:
    """Permissions of the job's owner, read when the job runs (a grant revoked meanwhile counts):
    two queries for the whole selection instead of several per item."""
    from containers.permissions import visible_containers

    if user is None or not user.is_active:
        return lambda c: (404, "Not found.")
    selection = Container.objects.filter(pk__in=keys)
    viewable = set(visible_containers(user, "view", selection).values_list("pk", flat=True))
    operable = set(visible_containers(user, "operate", selection).values_list("pk", flat=True))

    def check(container: Container):
        if container.pk not in viewable:
            return (404, "Not found.")
        if container.pk not in operable:
            return (403, "You may view this container but not operate it.")
        return None

    return check


def _announce_item(job: BulkJob, result: BulkResult, host_id: str, done: int) -> None:
    # To the job's owner only. The envelope names the container (so the consumer checks that the
    # owner may still see it) except for a 404, which says no more than the key they sent.
    visible = result.status != 404
    bus.emit(
        "bulk.item",
        category=EventCategory.USER,
        persist=False,
        host=host_id if visible else None,
        container=result.key if visible else None,
        user=job.user_id,
        data={"job": str(job.pk), "action": job.action, "key": result.key, "ok": result.ok,
              "state": result.state, "error": result.error, "status": result.status, "done": done, "total": job.total},
    )


def execute_job(job_id) -> BulkJob | None:
    """Run every pending item of a job. A job handed out again (its worker was lost) goes on
    with the items not yet done; a finished job is left alone."""
    job = BulkJob.objects.select_related("user").filter(pk=job_id).first()
    if job is None or job.status in (BulkJobStatus.FINISHED, BulkJobStatus.FAILED):
        return job
    now = timezone.now()
    BulkJob.objects.filter(pk=job.pk, started_at__isnull=True).update(started_at=now)
    BulkJob.objects.filter(pk=job.pk).update(status=BulkJobStatus.RUNNING)
    items = dict(job.items.filter(status=BulkItemStatus.PENDING).order_by("position").values_list("key", "pk"))
    done_before = job.total - len(items)
    counter = {"done": done_before}
    lock = threading.Lock()

    def record(result: BulkResult) -> None:
        BulkJobItem.objects.filter(pk=items[result.key]).update(
            status=BulkItemStatus.DONE if result.ok else BulkItemStatus.FAILED, ok=result.ok, state=result.state,
            error=result.error, http_status=result.status, finished_at=timezone.now(),
        )
        with lock:
            counter["done"] += 1
            done = counter["done"]
        _announce_item(job, result, result.key.split(":", 1)[0], done)

    try:
        if items:
            bulk(list(items), job.action, user=job.user, options=job.options, check=_job_checker(job.user, list(items)), on_result=record)
    except Exception as exc:
        logger.exception("bulk job %s failed", job.pk)
        BulkJob.objects.filter(pk=job.pk).update(status=BulkJobStatus.FAILED, error=f"{exc.__class__.__name__}: {exc}",
                                                 finished_at=timezone.now())
        raise
    counts = job.items.aggregate(ok=Count("pk", filter=Q(ok=True)), failed=Count("pk", filter=Q(status=BulkItemStatus.FAILED)))
    BulkJob.objects.filter(pk=job.pk).update(status=BulkJobStatus.FINISHED, succeeded=counts["ok"], failed=counts["failed"],
                                             finished_at=timezone.now())
    job.refresh_from_db()
    who = getattr(job.user, "username", None) or "DockMon"
    bus.emit(
        "bulk.finished",
        category=EventCategory.USER,
        severity=Severity.WARNING if job.failed else Severity.INFO,
        actor=job.user,
        message=f"{who}: {job.action} on {job.total} container(s): {job.succeeded} done, {job.failed} failed",
        user=job.user_id,
        data={"job": str(job.pk), "action": job.action, "status": job.status, "total": job.total,
              "succeeded": job.succeeded, "failed": job.failed},
    )
    return job
