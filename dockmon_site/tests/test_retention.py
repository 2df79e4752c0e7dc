"""Retention prunes profile sessions, bulk jobs, update runs, restart attempts and the audit log
past their settings, a batch at a time, and never a row still in use."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditEntry
from accounts.tasks import prune_audit_log
from containers.choices import BulkJobStatus
from containers.models import BulkJob, BulkJobItem, Container, DockerHost, ProfileSession
from containers.tasks import prune_bulk_jobs, prune_profiles
from dockmon_site import retention
from healthchecks.choices import AttemptStatus
from healthchecks.models import RestartAttempt
from healthchecks.tasks import prune_restart_attempts
from updates.choices import RunStatus
from updates.models import UpdateRun
from updates.tasks import prune_update_runs

pytestmark = pytest.mark.django_db


def ago(days: float):
    return timezone.now() - timedelta(days=days)


@pytest.fixture
def host(unique):
    return DockerHost.objects.create(name=f"ret-{unique}", url="unix:///nonexistent.sock")


@pytest.fixture
def container(host, unique):
    return Container.objects.create(host=host, container_id=(unique * 8)[:64], short_id=(unique * 2)[:12], name=f"web-{unique}",
                                    state="running", image="demo/web:1")


def test_profile_sessions_that_ended_long_ago_go_and_open_ones_stay(settings, host):
    settings.DOCKMON_PROFILE_RETENTION_DAYS = 30
    old = ProfileSession.objects.create(container_key="k:old", host=host, started_at=ago(40), ended_at=ago(40))
    recent = ProfileSession.objects.create(container_key="k:new", host=host, started_at=ago(2), ended_at=ago(2))
    still_open = ProfileSession.objects.create(container_key="k:open", host=host, started_at=ago(90))
    assert prune_profiles() == 1
    assert set(ProfileSession.objects.values_list("pk", flat=True)) == {recent.pk, still_open.pk}
    assert old.pk not in set(ProfileSession.objects.values_list("pk", flat=True))


def test_bulk_jobs_that_are_over_go_with_their_items_and_running_ones_stay(settings):
    settings.DOCKMON_BULK_JOB_RETENTION_DAYS = 30
    done = BulkJob.objects.create(action="stop", status=BulkJobStatus.FINISHED, created_at=ago(40), finished_at=ago(40), total=2)
    BulkJobItem.objects.bulk_create([BulkJobItem(job=done, position=i, key=f"k:{i}") for i in range(2)])
    failed_early = BulkJob.objects.create(action="stop", status=BulkJobStatus.FAILED, created_at=ago(40))
    running = BulkJob.objects.create(action="stop", status=BulkJobStatus.RUNNING, created_at=ago(40), started_at=ago(40))
    pending = BulkJob.objects.create(action="start", status=BulkJobStatus.PENDING, created_at=ago(40))
    recent = BulkJob.objects.create(action="stop", status=BulkJobStatus.FINISHED, created_at=ago(1), finished_at=ago(1))
    assert prune_bulk_jobs() == 2
    assert set(BulkJob.objects.values_list("pk", flat=True)) == {running.pk, pending.pk, recent.pk}
    assert not BulkJobItem.objects.filter(job_id=done.pk).exists()
    assert not BulkJob.objects.filter(pk=failed_early.pk).exists()


def test_update_runs_that_ended_long_ago_go_and_active_ones_stay(settings, host):
    settings.DOCKMON_UPDATE_RUN_RETENTION_DAYS = 180

    def run(name, status, created, finished=None):
        row = UpdateRun.objects.create(host=host, container_name=name, old_key=f"{host.pk}:{name}", status=status, finished_at=finished)
        UpdateRun.objects.filter(pk=row.pk).update(created_at=created)  # auto_now_add
        return row

    gone = [run("a", RunStatus.SUCCEEDED, ago(200), ago(200)), run("b", RunStatus.ROLLED_BACK, ago(200), ago(200)),
            run("c", RunStatus.FAILED, ago(200))]
    kept = [run("d", RunStatus.RUNNING, ago(200)), run("e", RunStatus.PENDING, ago(200)), run("f", RunStatus.FAILED, ago(200), ago(10))]
    assert prune_update_runs() == len(gone)
    assert set(UpdateRun.objects.values_list("pk", flat=True)) == {row.pk for row in kept}


def test_restart_attempts_that_are_over_go_and_pending_or_running_ones_stay(settings, container):
    settings.DOCKMON_RESTART_ATTEMPT_RETENTION_DAYS = 30

    def attempt(status, created):
        return RestartAttempt.objects.create(container=container, trigger="die", attempt=1, status=status, due_at=created, created_at=created)

    gone = [attempt(status, ago(40)) for status in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.SKIPPED)]
    kept = [attempt(AttemptStatus.PENDING, ago(40)), attempt(AttemptStatus.RUNNING, ago(40)), attempt(AttemptStatus.SUCCEEDED, ago(1))]
    assert prune_restart_attempts() == len(gone)
    assert set(RestartAttempt.objects.values_list("pk", flat=True)) == {row.pk for row in kept}


def test_the_audit_log_is_pruned_past_its_retention_and_zero_keeps_it(settings):
    settings.DOCKMON_AUDIT_RETENTION_DAYS = 365
    old = AuditEntry.objects.create(ts=ago(400), action="host.update")
    recent = AuditEntry.objects.create(ts=ago(300), action="host.update")
    settings.DOCKMON_AUDIT_RETENTION_DAYS = 0
    assert prune_audit_log() == 0 and AuditEntry.objects.filter(pk=old.pk).exists()
    settings.DOCKMON_AUDIT_RETENTION_DAYS = 365
    assert prune_audit_log() == 1
    assert list(AuditEntry.objects.filter(pk__in=[old.pk, recent.pk]).values_list("pk", flat=True)) == [recent.pk]


def test_deletes_go_in_batches_and_only_rows_still_matching():
    rows = [AuditEntry.objects.create(ts=ago(500), action=f"a{i}") for i in range(5)]
    keep = AuditEntry.objects.create(ts=ago(500), action="keep")
    old = AuditEntry.objects.filter(ts__lt=ago(400)).exclude(action="keep")
    with CaptureQueriesContext(connection) as queries:
        assert retention.delete_in_batches(old, batch_size=2) == 5
    assert len([q for q in queries.captured_queries if q["sql"].upper().startswith("DELETE")]) == 3  # 2 + 2 + 1
    assert not AuditEntry.objects.filter(pk__in=[row.pk for row in rows]).exists()
    assert AuditEntry.objects.filter(pk=keep.pk).exists()
    assert retention.delete_in_batches(old, batch_size=2) == 0


def test_every_prune_task_is_in_the_beat_schedule_and_registered():
    from dockmon_site.celery import app

    app.loader.import_default_modules()
    wanted = {"containers.tasks.prune_profiles", "containers.tasks.prune_bulk_jobs", "updates.tasks.prune_update_runs",
              "healthchecks.prune_restart_attempts", "accounts.prune_audit_log"}
    scheduled = {entry["task"]: entry for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    for name in wanted:
        assert name in app.tasks, name
        assert scheduled[name]["schedule"] == 3600.0 and scheduled[name]["options"]["expires"] < 3600
