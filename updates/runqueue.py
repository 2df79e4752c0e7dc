"""Asking for an update: who may update what, the run row, and the per-host queue.

request_update() checks the container, the requester's right and the update policy, and records
a pending UpdateRun (one active run per container); kick() starts a host's waiting runs while
fewer than DOCKMON_UPDATE_CONCURRENCY_PER_HOST are under way, each as a Celery task that runs
updates.executor.execute().
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from containers.models import Container
from containers.permissions import has_container_perm
from updates.choices import ACTIVE_RUN_STATUSES, Policy, RunStatus, RunTrigger
from updates.models import ContainerUpdate, UpdateRun
from updates.policies import decide
from updates.registry import is_image_id, parse_reference

logger = logging.getLogger(__name__)


class RunRefused(Exception):
    """An update that may not run; `status` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 409, run: UpdateRun | None = None):
        super().__init__(message)
        self.status = status
        self.run = run



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

