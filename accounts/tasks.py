"""Thin Celery tasks of the accounts app."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="accounts.prune_audit_log", ignore_result=True)
def prune_audit_log() -> int:
    """Retention: audit rows older than DOCKMON_AUDIT_RETENTION_DAYS (0 keeps them for ever)."""
    from django.conf import settings

    from accounts.models import AuditEntry
    from dockmon_site import retention

    days = settings.DOCKMON_AUDIT_RETENTION_DAYS
    if not days:
        return 0
    return retention.delete_in_batches(AuditEntry.objects.filter(ts__lt=retention.cutoff(days)))
