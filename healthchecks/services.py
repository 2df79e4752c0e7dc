"""Health checks: claiming due checks, running them, recording results.

Flow: the beat task `dispatch_due_checks` (every DOCKMON_HEALTH_DISPATCH_SECONDS) claims the
checks due within the next `lookahead` seconds in batches, each claim a conditional UPDATE
that sets a lease (so two dispatchers or workers never hold the same check), and sends each
batch to `run_checks(ids, owner)`. The worker renews the leases it still holds and hands the
probes to the process-wide runner (healthchecks.runner): a thread pool where each probe waits
for its due time, runs with its own total deadline, and passes its result to one recorder
thread that writes it. A hanging endpoint therefore holds one thread for at most its timeout
and never the worker, the batch or any other check.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from containers import bus
from containers.choices import EventCategory, Severity
from containers.models import Container
from dockmon_site import outbound, outbound_engines
from healthchecks.choices import CheckStatus, ResultStatus
from healthchecks.models import TIMEOUT_MAX, CheckResult, HealthCheck
from healthchecks.probe import ProbeResult, ProbeSpec, probe, public_error

logger = logging.getLogger(__name__)

# How long a dispatched batch may wait in the broker queue before its checks may be claimed
# again; the worker renews the lease to the probe's own timeout when it starts.
QUEUE_LEASE_SECONDS = 60.0
LEASE_GRACE_SECONDS = 15.0


class CheckBusy(Exception):
    """The check is running right now (someone else holds its lease)."""


@dataclass
class Job:
    check_id: int
    owner: str
    scheduled_at: datetime | None
    spec: ProbeSpec


def _lease_free(now: datetime) -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def body_limit() -> int:
    return settings.DOCKMON_HEALTH_BODY_LIMIT


# ---------------------------------------------------------------------------
# Claiming
# ---------------------------------------------------------------------------
def claim_due(*, limit: int, lookahead: float = 0.0, now: datetime | None = None, owner: str | None = None) -> tuple[str, list[int]]:
    """Claim up to `limit` enabled checks due by now + lookahead; returns (owner, ids).

    The UPDATE repeats the selection's conditions, so of two claimers racing for a row only the
    first to update it matches: the second's UPDATE skips it (PostgreSQL re-evaluates the WHERE
    after the row lock; SQLite runs one writer at a time). Reading back by owner then gives
    exactly the rows this claimer won.
    """
    now = now or timezone.now()
    owner = owner or uuid.uuid4().hex
    horizon = now + timedelta(seconds=lookahead)
    due = Q(enabled=True, next_due_at__lte=horizon) & _lease_free(now)
    ids = list(HealthCheck.objects.filter(due).order_by("next_due_at").values_list("pk", flat=True)[:limit])
    if not ids:
        return owner, []
    HealthCheck.objects.filter(due, pk__in=ids).update(
        lease_owner=owner, lease_expires_at=now + timedelta(seconds=QUEUE_LEASE_SECONDS + lookahead)
    )
    return owner, list(HealthCheck.objects.filter(pk__in=ids, lease_owner=owner).values_list("pk", flat=True))


def release(ids: list[int], owner: str) -> None:
    HealthCheck.objects.filter(pk__in=ids, lease_owner=owner).update(lease_owner="", lease_expires_at=None)


def dispatch_due(*, batch_size: int | None = None, max_batches: int | None = None, lookahead: float | None = None) -> int:
    """Claim due checks batch by batch and queue a run_checks task per batch; returns the count."""
    from healthchecks.tasks import run_checks

    batch_size = batch_size or settings.DOCKMON_HEALTH_BATCH_SIZE
    max_batches = max_batches or settings.DOCKMON_HEALTH_MAX_BATCHES
    lookahead = settings.DOCKMON_HEALTH_LOOKAHEAD_SECONDS if lookahead is None else lookahead
    sent = 0
    # One horizon for the whole run: with a moving one, checks that became due while this loop
    # ran would trickle out as many tiny batches (a task each) instead of waiting for the next tick.
    now = timezone.now()
    for _ in range(max_batches):
        owner, ids = claim_due(limit=batch_size, lookahead=lookahead, now=now)
        if not ids:
            break
        try:
            run_checks.delay(ids, owner)
        except Exception:
            # Broker unreachable: give the checks back rather than sit on them until the lease ends.
            release(ids, owner)
            raise
        sent += len(ids)
        if len(ids) < batch_size:
            break
    return sent


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------
def jobs_for(ids: list[int], owner: str, *, lookahead: float = 0.0) -> list[Job]:
    """Renew the leases still held by `owner` for as long as the probes can take; the jobs."""
    now = timezone.now()
    HealthCheck.objects.filter(pk__in=ids, lease_owner=owner).update(
        lease_expires_at=now + timedelta(seconds=TIMEOUT_MAX + lookahead + LEASE_GRACE_SECONDS)
    )
    limit = body_limit()
    # The probe threads have no database connection: read the registered engines here, so the
    # outbound policy they apply is current.
    try:
        outbound_engines.engine_targets()
    except outbound.Refused:
        pass  # unreadable: each probe then refuses (fails closed) with this reason
    return [
        Job(check.pk, owner, check.next_due_at, ProbeSpec.for_check(check, body_limit=limit))
        for check in HealthCheck.objects.filter(pk__in=ids, lease_owner=owner).select_related("method_approved_by")
    ]


def run_claimed(ids: list[int], owner: str, *, wait: bool = False) -> list[tuple[Job, ProbeResult]] | None:
    """Run the claimed checks. wait=False: hand them to the runner and return at once (worker);
    wait=True: run them concurrently, record the results here and return them (tests, tools)."""
    from healthchecks import runner

    jobs = jobs_for(ids, owner, lookahead=settings.DOCKMON_HEALTH_LOOKAHEAD_SECONDS)
    if not wait:
        runner.submit(jobs)
        return None
    done = runner.run_now(jobs)
    record_many([Outcome(job.check_id, job.owner, result, started_at, job.scheduled_at) for job, started_at, result in done])
    return [(job, result) for job, _, result in done]


def next_due(scheduled_at: datetime | None, interval: int, now: datetime) -> datetime:
    """Keep the check's cadence (scheduled + interval); after a long gap, skip missed slots."""
    step = timedelta(seconds=interval)
    if scheduled_at is None:
        return now + step
    following = scheduled_at + step
    if following <= now:
        missed = int((now - scheduled_at) / step)
        following = scheduled_at + step * (missed + 1)
    return following


@dataclass
class Outcome:
    """One finished probe, to be recorded."""

    check_id: int
    owner: str
    result: ProbeResult
    started_at: datetime
    scheduled_at: datetime | None
    reschedule: bool = True


_STATE_FIELDS = ["status", "status_changed_at", "consecutive_failures", "consecutive_successes", "last_checked_at",
                 "last_response_ms", "last_status_code", "last_error", "lease_owner", "lease_expires_at", "next_due_at",
                 "updated_at"]


def record_many(outcomes: list[Outcome]) -> dict[int, HealthCheck]:
    """Write finished probes: each check's state by its thresholds, CheckResult rows, a
    health.status event per status change, a restart request where one is due. Set-based (one
    locking SELECT, one bulk UPDATE, one bulk INSERT per batch) because it runs for every check
    every interval. Returns the updated checks by id.

    An outcome whose lease is no longer held by its owner is dropped: the check was deleted, or
    its lease ran out and another worker has it now."""
    from healthchecks import restarts

    if not outcomes:
        return {}
    now = timezone.now()
    with transaction.atomic():
        # Locked in id order, so that two recorders never wait on each other in a cycle.
        locked = HealthCheck.objects.select_for_update().filter(pk__in={o.check_id for o in outcomes}).order_by("pk")
        checks = {check.pk: check for check in locked}
        updated: dict[int, HealthCheck] = {}
        rows, changes, restart_due = [], [], []
        for outcome in outcomes:
            check = checks.get(outcome.check_id)
            if check is None or check.lease_owner != outcome.owner:
                continue
            result = outcome.result
            previous, status = check.apply_outcome(result.ok)
            check.last_checked_at = outcome.started_at
            check.last_response_ms = result.response_ms
            check.last_status_code = result.status_code
            check.last_error = result.error
            check.lease_owner = ""
            check.lease_expires_at = None
            check.updated_at = now
            if outcome.reschedule:
                check.next_due_at = next_due(outcome.scheduled_at, check.interval_seconds, now)
            if status != previous:
                check.status_changed_at = now
                changes.append((check, previous, result))
            if not result.ok and check.restart_due():
                restart_due.append((check, result))
            updated[check.pk] = check
            rows.append(CheckResult(
                health_check=check,
                ts=outcome.started_at,
                scheduled_at=outcome.scheduled_at,
                status=ResultStatus.SUCCESS if result.ok else ResultStatus.FAILURE,
                response_ms=result.response_ms,
                status_code=result.status_code,
                error=result.error,
            ))
        if updated:
            _write_state(list(updated.values()))
            CheckResult.objects.bulk_create(rows)
        needing_container = [check for check, *_ in changes + restart_due]
        if needing_container:
            containers = Container.objects.in_bulk({check.container_id for check in needing_container})
            for check in needing_container:
                check.container = containers[check.container_id]
        for check, previous, result in changes:
            _announce(check, previous, result)
        for check, result in restart_due:
            restarts.request_restart(
                check.container, trigger="health_check", health_check=check,
                reason=f"health check {check.name or check.url} failed {check.consecutive_failures} times: "
                       f"{public_error(result.error)}",
            )
    return updated


def _write_state(checks: list[HealthCheck]) -> None:
    """One UPDATE statement run for many rows (executemany). Django's bulk_update builds a CASE
    expression per field and row, which costs milliseconds of Python per row: too slow for a
    recorder that writes every check every few seconds."""
    fields = [HealthCheck._meta.get_field(name) for name in _STATE_FIELDS]
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(HealthCheck._meta.db_table)} SET "
           + ", ".join(f"{quote(field.column)} = %s" for field in fields)
           + f" WHERE {quote(HealthCheck._meta.pk.column)} = %s")
    params = [[field.get_db_prep_value(getattr(check, field.attname), connection) for field in fields] + [check.pk]
              for check in checks]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def record(check_id: int, owner: str, result: ProbeResult, *, started_at: datetime, scheduled_at: datetime | None,
           reschedule: bool = True) -> HealthCheck | None:
    """record_many() for one result; the updated check, or None when the lease was lost."""
    return record_many([Outcome(check_id, owner, result, started_at, scheduled_at, reschedule)]).get(check_id)


def _announce(check: HealthCheck, previous: str, result: ProbeResult) -> None:
    container = check.container
    label = check.name or check.url
    if check.status == CheckStatus.UNHEALTHY:
        severity = Severity.WARNING
        text = f"{container.name}: health check {label} is unhealthy ({public_error(result.error)})"
    else:
        severity = Severity.INFO
        text = f"{container.name}: health check {label} is {check.status}"
    bus.emit(
        "health.status",
        category=EventCategory.HEALTH,
        severity=severity,
        host=container.host_id,
        container=container,
        message=text,
        data={
            "key": container.key,
            "name": container.name,
            "check": check.pk,
            "check_name": check.name,
            "url": check.url,
            "status": check.status,
            "previous": previous,
            "response_ms": result.response_ms,
            "status_code": result.status_code,
            # Everyone who may view the container sees the event: the kind of failure only
            # (administrators read the detail in last_error and the results).
            "error": public_error(result.error),
            "consecutive_failures": check.consecutive_failures,
        },
    )


def test_now(check: HealthCheck) -> tuple[HealthCheck, ProbeResult]:
    """Run one check right away (the API's test/ and the admin's "run now"); recorded like any
    run, without moving its schedule. Raises CheckBusy while it is running elsewhere."""
    now = timezone.now()
    owner = f"now-{uuid.uuid4().hex}"
    taken = HealthCheck.objects.filter(_lease_free(now), pk=check.pk).update(
        lease_owner=owner, lease_expires_at=now + timedelta(seconds=check.timeout_seconds + LEASE_GRACE_SECONDS)
    )
    if not taken:
        raise CheckBusy("This check is running right now; try again in a moment.")
    check.refresh_from_db()
    started_at = timezone.now()
    # Sent on behalf of whoever asked (the API's test/ needs `operate` on the container, the
    # admin's "run now" `change`); the outbound policy decides where it may go.
    result = probe(ProbeSpec.for_check(check, body_limit=body_limit()))
    updated = record(check.pk, owner, result, started_at=started_at, scheduled_at=None, reschedule=False)
    return (updated or check), result


def purge_results(*, now: datetime | None = None, chunk: int = 5000) -> int:
    """Delete results older than the retention, in chunks (no huge single DELETE)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.DOCKMON_HEALTH_RESULT_RETENTION_DAYS)
    total = 0
    while True:
        ids = list(CheckResult.objects.filter(ts__lt=cutoff).values_list("pk", flat=True)[:chunk])
        if not ids:
            return total
        total += CheckResult.objects.filter(pk__in=ids).delete()[0]
