from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from containers.models import Container, Event


@shared_task(ignore_result=True)
def prune_events() -> dict:
    """Retention: drop event-log rows and long-removed containers past their age."""
    now = timezone.now()
    events, _ = Event.objects.filter(ts__lt=now - timedelta(days=settings.DOCKMON_EVENT_RETENTION_DAYS)).delete()
    cutoff = now - timedelta(days=settings.DOCKMON_REMOVED_CONTAINER_RETENTION_DAYS)
    containers, _ = Container.objects.filter(removed_at__lt=cutoff).delete()
    return {"events": events, "containers": containers}
