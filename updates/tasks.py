"""Thin Celery tasks: the work is in updates.services."""

from __future__ import annotations

from celery import shared_task

from updates import services


@shared_task(name="updates.tasks.check_updates", ignore_result=True)
def check_updates(container_keys=None, host_ids=None, force=False, check_id=None):
    """One check run over the given containers / hosts (None = all). Never one task per container:
    a single run shares each registry request between every container that uses the image."""
    summary = services.check(container_keys=container_keys, host_ids=host_ids, force=force, check_id=check_id)
    return {"check": summary.check, "total": summary.total, "updates": len(summary.updates)}
