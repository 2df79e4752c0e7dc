"""Thin Celery tasks: they take ids, re-fetch, and hand the work to the services."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection
from django.utils import timezone

from containers import engine, stats
from containers.choices import HostStatus
from containers.models import BulkJob, Container, DiskUsage, DockerHost, Event, ProfileSession


@shared_task(ignore_result=True)
def prune_events() -> dict:
    """Retention: drop event-log rows and long-removed containers past their age."""
    now = timezone.now()
    events, _ = Event.objects.filter(ts__lt=now - timedelta(days=settings.DOCKMON_EVENT_RETENTION_DAYS)).delete()
    cutoff = now - timedelta(days=settings.DOCKMON_REMOVED_CONTAINER_RETENTION_DAYS)
    containers, _ = Container.objects.filter(removed_at__lt=cutoff).delete()
    disk, _ = DiskUsage.objects.filter(ts__lt=now - timedelta(days=settings.DOCKMON_DISK_USAGE_RETENTION_DAYS)).delete()
    if connection.vendor == "sqlite":
        # SQLite keeps no planner statistics by itself; without them it picks poor indexes.
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA optimize")
    return {"events": events, "containers": containers, "disk_usage": disk}


def _online_host_ids() -> list[str]:
    return [str(pk) for pk in DockerHost.objects.filter(enabled=True, status=HostStatus.ONLINE).values_list("pk", flat=True)]


@shared_task(ignore_result=True)
def collect_stats() -> int:
    """Fan out one stats task per online host, so several workers share the hosts."""
    expires = settings.DOCKMON_STATS_INTERVAL_SECONDS * 0.9
    host_ids = _online_host_ids()
    for host_id in host_ids:
        collect_host_stats.apply_async((host_id,), expires=expires)
    return len(host_ids)


@shared_task(ignore_result=True)
def collect_host_stats(host_id: str) -> dict:
    try:
        return stats.collect_host(host_id)
    except engine.EngineError as exc:
        return {"error": str(exc)}


@shared_task(ignore_result=True)
def rollup_stats() -> dict:
    return {str(k): v for k, v in stats.rollup_all().items()}


@shared_task(ignore_result=True)
def prune_stats() -> int:
    return stats.prune()


@shared_task(ignore_result=True)
def collect_disk_usage() -> int:
    host_ids = _online_host_ids()
    for host_id in host_ids:
        collect_host_disk_usage.apply_async((host_id,), expires=settings.DOCKMON_DISK_USAGE_SECONDS * 0.9)
    return len(host_ids)


@shared_task(ignore_result=True)
def collect_host_disk_usage(host_id: str) -> dict:
    from containers.services import record_disk_usage

    host = DockerHost.objects.filter(pk=host_id).first()
    if host is None:
        return {}
    try:
        return {"id": record_disk_usage(host).pk}
    except engine.EngineError as exc:
        return {"error": str(exc)}


@shared_task(ignore_result=True)
def run_bulk_job(job_id: str) -> dict:
    """One bulk operation over a large selection (containers.operations.execute_job)."""
    from containers import operations

    job = operations.execute_job(job_id)
    return {"status": job.status, "succeeded": job.succeeded, "failed": job.failed} if job else {}


@shared_task(ignore_result=True)
def prune_profiles() -> int:
    """Retention: profile sessions that ended more than DOCKMON_PROFILE_RETENTION_DAYS ago (an open
    session is never touched)."""
    from dockmon_site import retention

    old = ProfileSession.objects.filter(ended_at__isnull=False, ended_at__lt=retention.cutoff(settings.DOCKMON_PROFILE_RETENTION_DAYS))
    return retention.delete_in_batches(old)


@shared_task(ignore_result=True)
def prune_bulk_jobs() -> int:
    """Retention: finished or failed bulk jobs (with their items) older than
    DOCKMON_BULK_JOB_RETENTION_DAYS; pending and running jobs are never touched."""
    from django.db.models import Q

    from containers.choices import BulkJobStatus
    from dockmon_site import retention

    cutoff = retention.cutoff(settings.DOCKMON_BULK_JOB_RETENTION_DAYS)
    old = BulkJob.objects.filter(status__in=(BulkJobStatus.FINISHED, BulkJobStatus.FAILED)).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
    return retention.delete_in_batches(old)


@shared_task(ignore_result=True)
def pull_image(host_id: str, ref: str, user_id: int | None = None) -> str | None:
    """Pull an image onto a host (progress as `image.pull` messages); the API checked `operate`."""
    from django.contrib.auth import get_user_model

    from containers import images
    from containers.engine_objects import ObjectError

    host = DockerHost.objects.filter(pk=host_id).first()
    if host is None:
        return None
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        return images.pull(host, ref, user)
    except ObjectError:
        return None  # announced and recorded by images.pull
