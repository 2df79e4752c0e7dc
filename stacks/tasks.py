"""Thin Celery tasks: the work is in stacks.runs."""

from __future__ import annotations

import logging
import shutil
import time

from celery import shared_task

logger = logging.getLogger(__name__)

TRASH_KEEP_SECONDS = 7 * 24 * 3600


@shared_task(name="stacks.tasks.execute_run", ignore_result=True)
def execute_run(run_id):
    """One stack run (stacks.runs); a run that is not pending any more is left alone.

    Runs compose on the behalf of the run's actor: guarded by `deploy` on the stack's host,
    checked when the run was created (stacks/api/views.py, stacks/admin.py)."""
    from stacks import runs

    runs.execute(run_id)


@shared_task(name="stacks.tasks.auto_update_stacks", ignore_result=True)
def auto_update_stacks() -> int:
    """An update run for every managed stack that asks for automatic updates and has no run going
    (the stack's `auto_update`, set by someone holding `deploy` on its host, or a service label)."""
    from stacks import runs

    return len(runs.schedule_auto_updates())


@shared_task(name="stacks.tasks.repair_stale_runs", ignore_result=True)
def repair_stale_runs() -> int:
    """Runs whose worker died: each compose command is killed at its timeout, so a run still
    "running" long after that (or a run never picked up) will not end by itself."""
    from stacks import runs

    return runs.fail_stale()


@shared_task(name="stacks.tasks.prune_trash", ignore_result=True)
def prune_trash() -> int:
    """Files of deleted stacks are kept in the trash for a week, then removed."""
    from stacks import compose

    trash = compose.trash_dir()
    if not trash.exists():
        return 0
    removed = 0
    cutoff = time.time() - TRASH_KEEP_SECONDS
    for entry in trash.iterdir():
        if entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
