"""Thin Celery tasks: the work is in updates.services (checks), updates.executor (runs),
updates.crash_repair and updates.autoupdate (opt-in automatic updates)."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from updates import services

logger = logging.getLogger(__name__)


@shared_task(name="updates.tasks.check_updates", ignore_result=True)
def check_updates(container_keys=None, host_ids=None, force=False, check_id=None):
    """One check run over the given containers / hosts (None = all). Never one task per container:
    a single run shares each registry request between every container that uses the image."""
    summary = services.check(container_keys=container_keys, host_ids=host_ids, force=force, check_id=check_id)
    # Auto-update runs after the check that found the update (containers that opted in).
    from updates import autoupdate

    try:
        autoupdate.schedule(summary.updates)
    except Exception:  # the check's findings are saved; auto-update tries again from beat
        logger.exception("auto-update after the check failed")
    return {"check": summary.check, "total": summary.total, "updates": len(summary.updates)}


@shared_task(name="updates.tasks.execute_update", ignore_result=True)
def execute_update(run_id):
    """One update run (updates.executor); a run that is not pending any more is left alone."""
    from updates import executor

    executor.execute(run_id)


@shared_task(name="updates.tasks.repair_updates", ignore_result=True)
def repair_updates():
    from updates import crash_repair

    return crash_repair.repair()


@shared_task(name="updates.tasks.auto_update_due", ignore_result=True)
def auto_update_due():
    """Containers whose maintenance window has opened since the check that found their update."""
    from updates import autoupdate

    return len(autoupdate.schedule(None))


@shared_task(name="updates.tasks.prune_update_runs", ignore_result=True)
def prune_update_runs() -> int:
    """Retention: update runs that ended more than DOCKMON_UPDATE_RUN_RETENTION_DAYS ago; a pending
    or running run is never touched (a backup left by a deleted run is kept, never removed)."""
    from django.conf import settings
    from django.db.models import Q

    from dockmon_site import retention
    from updates.choices import ACTIVE_RUN_STATUSES
    from updates.models import UpdateRun

    cutoff = retention.cutoff(settings.DOCKMON_UPDATE_RUN_RETENTION_DAYS)
    old = UpdateRun.objects.exclude(status__in=ACTIVE_RUN_STATUSES).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
    return retention.delete_in_batches(old)


@worker_ready.connect
def _repair_on_start(sender=None, **kwargs):
    """A worker that starts repairs what a dead one left behind (runs stuck in `running`, backups)."""
    from django.db import close_old_connections

    from updates import crash_repair

    try:
        summary = crash_repair.repair()
        if summary["runs"] or summary["backups"]:
            logger.warning("update repair at worker start: %s", summary)
    except Exception:
        logger.exception("update repair at worker start failed")
    finally:
        close_old_connections()
