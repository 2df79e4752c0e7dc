"""Auto-restart: containers that die while they should run, and containers whose HTTP check
with `auto_restart` fails, are restarted with growing delays, then left alone.

1. Triggers arrive through the event bus (`on_event`, registered in AppConfig.ready()): a
   `container.state` event into exited/dead for a container with an enabled AutoRestartConfig
   whose desired state is not "stopped" (a stop through DockMon, or a `docker stop` / `docker
   kill` seen by the monitor, sets it), and from services.record_many() when a check with
   auto_restart reaches its failure threshold.
2. request_restart() does not restart anything: it writes a pending RestartAttempt due after
   initial_delay × factor^(n-1) (capped at max_delay). After max_retries restarts without
   `reset_after_minutes` of healthy running in between, it gives up instead and emits
   `container.restart_loop` (severity error) once.
3. The beat task `run_due_restarts` claims due attempts with a conditional UPDATE (so several
   workers never run the same one, and a crashed worker's claimed rows are noticed) and runs
   each through containers.operations.run(), never the SDK directly. Each attempt ends as
   succeeded / failed / skipped with a reason, and is announced as `container.auto_restart`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from containers import bus
from containers.choices import ContainerState, DesiredState, EventCategory, Severity
from containers.models import Container
from healthchecks.choices import AttemptStatus, CheckStatus, RestartTrigger
from healthchecks.models import AutoRestartConfig, HealthCheck, RestartAttempt

logger = logging.getLogger(__name__)

# A claimed attempt not finished after this long belongs to a worker that died mid-restart.
STALE_CLAIM = timedelta(minutes=10)
_DOWN_STATES = (ContainerState.EXITED, ContainerState.DEAD)
_OPEN = (AttemptStatus.PENDING, AttemptStatus.RUNNING)


# ---------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------
def on_event(event) -> None:
    """Bus subscriber: a container that should run has stopped running."""
    if event.type != "container.state" or not event.container_key:
        return
    data = event.data or {}
    if data.get("state") not in _DOWN_STATES or data.get("previous_state") in (*_DOWN_STATES, ContainerState.REMOVED):
        return
    container = Container.objects.select_related("host").filter(pk=event.container_key, removed_at__isnull=True).first()
    if container is None or container.desired_state == DesiredState.STOPPED:
        return
    if not AutoRestartConfig.objects.filter(container=container, enabled=True).exists():
        return
    request_restart(container, trigger=RestartTrigger.DIE, reason=f"exited with code {data.get('exit_code')}")


def _healthy_run(container: Container, trigger: str, health_check: HealthCheck | None, now: datetime) -> timedelta:
    """How long the container ran well before this failure: from its last start to its death
    (die) or to when the check turned unhealthy (health check)."""
    if container.started_at is None:
        return timedelta(0)
    if trigger == RestartTrigger.HEALTH_CHECK and health_check is not None:
        failed_at = health_check.status_changed_at or now
    else:
        failed_at = container.finished_at or now
    return max(failed_at - container.started_at, timedelta(0))


def request_restart(container: Container, *, trigger: str, reason: str = "", health_check: HealthCheck | None = None,
                    now: datetime | None = None) -> RestartAttempt | None:
    """Schedule the next restart of `container`, or give up; returns the pending attempt."""
    now = now or timezone.now()
    with transaction.atomic():
        config = AutoRestartConfig.objects.select_for_update().filter(container=container).first()
        if config is None:
            if trigger != RestartTrigger.HEALTH_CHECK:
                return None
            # A check with auto_restart opts the container in with the default pacing.
            config = AutoRestartConfig.objects.create(container=container)
        if not config.enabled:
            return None
        if RestartAttempt.objects.filter(container=container, status__in=_OPEN).exists():
            return None  # one restart at a time; the pending one covers this failure too
        if config.attempts and _healthy_run(container, trigger, health_check, now) >= config.reset_after:
            config.attempts, config.gave_up_at = 0, None
        if config.gave_up_at is not None:
            return None
        number = config.attempts + 1
        if number > config.max_retries:
            config.gave_up_at = now
            config.save(update_fields=["attempts", "gave_up_at", "updated_at"])
            bus.emit(
                "container.restart_loop",
                category=EventCategory.CONTAINER,
                severity=Severity.ERROR,
                host=container.host_id,
                container=container,
                message=f"{container.name} keeps failing: gave up after {config.max_retries} automatic restarts",
                data=container.event_data(attempts=config.attempts,
                      max_retries=config.max_retries, trigger=trigger, reason=reason),
            )
            return None
        delay = config.delay_for(number)
        attempt = RestartAttempt.objects.create(
            container=container, health_check=health_check, trigger=trigger, attempt=number, delay_seconds=delay,
            reason=reason[:2000], due_at=now + timedelta(seconds=delay), created_at=now,
        )
        config.attempts, config.last_attempt_at = number, now
        config.save(update_fields=["attempts", "gave_up_at", "last_attempt_at", "updated_at"])
        bus.emit(
            "container.restart_scheduled",
            category=EventCategory.CONTAINER,
            severity=Severity.WARNING,
            host=container.host_id,
            container=container,
            message=f"{container.name}: automatic restart {number}/{config.max_retries} in {delay:g}s ({reason})",
            data=container.event_data(attempt=number, max_retries=config.max_retries,
                  delay_seconds=delay, trigger=trigger, reason=reason, restart_attempt=attempt.pk),
        )
        return attempt


# ---------------------------------------------------------------------------
# Running due attempts
# ---------------------------------------------------------------------------
def claim_due(*, now: datetime | None = None, limit: int = 50) -> list[int]:
    """Claim due pending attempts (conditional UPDATE: a row goes to exactly one claimer)."""
    now = now or timezone.now()
    owner = uuid.uuid4().hex
    ids = list(RestartAttempt.objects.filter(status=AttemptStatus.PENDING, due_at__lte=now)
               .order_by("due_at").values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    RestartAttempt.objects.filter(pk__in=ids, status=AttemptStatus.PENDING).update(
        status=AttemptStatus.RUNNING, claimed_by=owner, claimed_at=now
    )
    return list(RestartAttempt.objects.filter(pk__in=ids, claimed_by=owner).values_list("pk", flat=True))


def _skip_reason(attempt: RestartAttempt) -> str:
    container = attempt.container
    if container.removed_at is not None:
        return "the container was removed"
    if container.desired_state == DesiredState.STOPPED:
        return "the container was stopped on purpose"
    if container.state == ContainerState.PAUSED:
        return "the container is paused"
    if attempt.trigger == RestartTrigger.DIE and container.state in (ContainerState.RUNNING, ContainerState.RESTARTING):
        return "the container is running again"
    check = attempt.health_check
    if attempt.trigger == RestartTrigger.HEALTH_CHECK:
        if check is None or not check.enabled:
            return "the health check was removed or disabled"
        if check.status == CheckStatus.HEALTHY:
            return "the health check recovered"
    return ""


def execute(attempt_id: int) -> RestartAttempt | None:
    """Run one claimed attempt through containers.operations."""
    from containers import operations

    attempt = RestartAttempt.objects.select_related("container__host", "health_check").filter(
        pk=attempt_id, status=AttemptStatus.RUNNING
    ).first()
    if attempt is None:
        return None
    container = attempt.container
    config = AutoRestartConfig.objects.filter(container=container).first()
    max_retries = config.max_retries if config else attempt.attempt
    skip = _skip_reason(attempt) or ("" if config is None or config.enabled else "auto-restart was disabled")
    error = ""
    if skip:
        attempt.status, attempt.error = AttemptStatus.SKIPPED, skip
    else:
        attempt.action = "restart" if container.state in (ContainerState.RUNNING, ContainerState.RESTARTING) else "start"
        try:
            operations.run(container, attempt.action, user=None)
        except operations.OperationError as exc:
            attempt.status, error = AttemptStatus.FAILED, str(exc)
            attempt.error = error
        except Exception as exc:  # an engine or database surprise must still close the attempt
            logger.exception("auto-restart of %s failed", container.key)
            attempt.status, error = AttemptStatus.FAILED, f"{exc.__class__.__name__}: {exc}"
            attempt.error = error
        else:
            attempt.status = AttemptStatus.SUCCEEDED
    attempt.finished_at = timezone.now()
    attempt.save(update_fields=["status", "error", "action", "finished_at"])
    if attempt.status == AttemptStatus.SKIPPED:
        text, severity = f"{container.name}: automatic restart {attempt.attempt} skipped: {skip}", Severity.INFO
    elif attempt.status == AttemptStatus.SUCCEEDED:
        text, severity = f"{container.name}: automatic restart {attempt.attempt}/{max_retries} done", Severity.WARNING
    else:
        text, severity = f"{container.name}: automatic restart {attempt.attempt}/{max_retries} failed: {error}", Severity.ERROR
    bus.emit(
        "container.auto_restart",
        category=EventCategory.CONTAINER,
        severity=severity,
        host=container.host_id,
        container=container,
        message=text,
        data=container.event_data(attempt=attempt.attempt, max_retries=max_retries,
              trigger=attempt.trigger, delay_seconds=attempt.delay_seconds, status=attempt.status,
              action=attempt.action, error=attempt.error, restart_attempt=attempt.pk),
    )
    if attempt.status == AttemptStatus.FAILED:
        # The restart itself failed: the container is still down, so the next attempt follows
        # (with its longer delay), until the loop guard gives up.
        request_restart(container, trigger=attempt.trigger, health_check=attempt.health_check,
                        reason=f"restart {attempt.attempt} failed: {error}")
    return attempt


def fail_stale_claims(*, now: datetime | None = None) -> int:
    """Attempts claimed by a worker that died mid-restart: close them as failed."""
    now = now or timezone.now()
    return RestartAttempt.objects.filter(status=AttemptStatus.RUNNING, claimed_at__lt=now - STALE_CLAIM).update(
        status=AttemptStatus.FAILED, error="the worker running this restart stopped", finished_at=now
    )


def reset_recovered(*, now: datetime | None = None) -> int:
    """Reset the counter of containers that have been running well for reset_after_minutes."""
    now = now or timezone.now()
    reset = 0
    configs = AutoRestartConfig.objects.select_related("container").filter(container__state=ContainerState.RUNNING).exclude(
        attempts=0, gave_up_at__isnull=True
    )
    for config in configs:
        container = config.container
        if container.started_at is None or now - container.started_at < config.reset_after:
            continue
        if RestartAttempt.objects.filter(container=container, status__in=_OPEN).exists():
            continue
        if HealthCheck.objects.filter(container=container, enabled=True, status=CheckStatus.UNHEALTHY).exists():
            continue
        reset += AutoRestartConfig.objects.filter(pk=config.pk).update(attempts=0, gave_up_at=None, updated_at=now)
    return reset


def reset(config: AutoRestartConfig) -> AutoRestartConfig:
    """A person's reset: forget the failures and the loop guard; cancel what is pending."""
    now = timezone.now()
    with transaction.atomic():
        RestartAttempt.objects.filter(container_id=config.container_id, status=AttemptStatus.PENDING).update(
            status=AttemptStatus.SKIPPED, error="reset by a person", finished_at=now
        )
        config.attempts, config.gave_up_at = 0, None
        config.save(update_fields=["attempts", "gave_up_at", "updated_at"])
    return config


# ---------------------------------------------------------------------------
# The `auto_restart` field of PATCH /containers/{key}/settings/
# ---------------------------------------------------------------------------
def auto_restart_enabled(container: Container) -> bool:
    return AutoRestartConfig.objects.filter(container=container, enabled=True).exists()


def set_auto_restart(container: Container, value: bool, user) -> None:
    config, created = AutoRestartConfig.objects.get_or_create(container=container, defaults={"enabled": value})
    if not created and config.enabled != value:
        config.enabled = value
        config.save(update_fields=["enabled", "updated_at"])
