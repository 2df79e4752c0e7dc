"""Thin Celery tasks: they take ids and call services/restarts."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="healthchecks.dispatch_due_checks", ignore_result=True)
def dispatch_due_checks() -> int:
    from healthchecks import services

    return services.dispatch_due()


@shared_task(name="healthchecks.run_checks", ignore_result=True)
def run_checks(ids: list[int], owner: str) -> None:
    from healthchecks import services

    services.run_claimed(ids, owner)


@shared_task(name="healthchecks.run_due_restarts", ignore_result=True)
def run_due_restarts() -> int:
    from healthchecks import restarts

    restarts.fail_stale_claims()
    restarts.reset_recovered()
    claimed = restarts.claim_due()
    for attempt_id in claimed:
        execute_restart.delay(attempt_id)
    return len(claimed)


@shared_task(name="healthchecks.execute_restart", ignore_result=True)
def execute_restart(attempt_id: int) -> None:
    from healthchecks import restarts

    restarts.execute(attempt_id)


@shared_task(name="healthchecks.purge_results", ignore_result=True)
def purge_results() -> int:
    from healthchecks import services

    return services.purge_results()


@shared_task(name="healthchecks.prune_restart_attempts", ignore_result=True)
def prune_restart_attempts() -> int:
    """Retention: restart attempts older than DOCKMON_RESTART_ATTEMPT_RETENTION_DAYS that are over;
    pending and running ones are never touched."""
    from django.conf import settings

    from dockmon_site import retention
    from healthchecks.choices import AttemptStatus
    from healthchecks.models import RestartAttempt

    cutoff = retention.cutoff(settings.DOCKMON_RESTART_ATTEMPT_RETENTION_DAYS)
    old = RestartAttempt.objects.exclude(status__in=(AttemptStatus.PENDING, AttemptStatus.RUNNING)).filter(created_at__lt=cutoff)
    return retention.delete_in_batches(old)
