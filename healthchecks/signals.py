"""Health checks and auto-restart rows follow their container when it is recreated."""

from __future__ import annotations

from django.utils import timezone

from healthchecks.choices import AttemptStatus
from healthchecks.models import AutoRestartConfig, HealthCheck, RestartAttempt


def follow_recreated_container(sender, *, old_key: str, new_key: str, **kwargs) -> None:
    """Receiver of containers.signals.container_rekeyed (inside the rekey transaction)."""
    HealthCheck.objects.filter(container_id=old_key).update(container_id=new_key)
    # A restart planned for the old container makes no sense for its replacement.
    RestartAttempt.objects.filter(container_id=old_key, status=AttemptStatus.PENDING).update(
        status=AttemptStatus.SKIPPED, error="the container was recreated", finished_at=timezone.now()
    )
    RestartAttempt.objects.filter(container_id=old_key).update(container_id=new_key)
    if AutoRestartConfig.objects.filter(container_id=new_key).exists():
        # The new container already has its own settings (set between create and rekey): keep them.
        AutoRestartConfig.objects.filter(container_id=old_key).delete()
    else:
        AutoRestartConfig.objects.filter(container_id=old_key).update(container_id=new_key)
