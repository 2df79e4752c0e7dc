"""Auto-update end to end: the scheduled check starts the updates it found for containers that
opted in, and a run that fails (here: the registry went away before the pull) is retried with a
backoff, not every five minutes for ever. Real engine, real registry behind a stand-in that can
be stopped."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from containers.models import Container
from updates import autoupdate, executor, tasks
from updates.choices import RunStatus, RunTrigger, UpdateStatus
from updates.models import AutoUpdate, ContainerUpdate, UpdateRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


@pytest.fixture
def private_queue():
    """Runs are queued where no worker reads (each test executes them itself)."""
    queue = f"dmtest-auto-{uuid.uuid4().hex[:8]}"
    with override_settings(DOCKMON_UPDATE_QUEUE=queue, DOCKMON_UPDATE_GRACE_SECONDS=1.0, DOCKMON_UPDATE_STOP_TIMEOUT=2):
        yield queue
    from dockmon_site.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)


def test_the_check_starts_auto_updates_and_a_failed_run_backs_off(
    testbed, alpha, make_host, sync, repo, unique, images_to_remove, containers_to_remove, private_queue
):
    """GIVEN a container that opted in to auto-update, whose registry then offers a new release
    WHEN the check task runs THEN it starts an auto-update aimed at that digest;
    WHEN the run fails because the registry went away THEN the five-minute auto-update task does
    not start it again at once, but does after the backoff, and waits twice as long after a
    second failure."""
    from testkit.registry import RegistryStandIn

    ref = testbed.image_ref(repo, "1.0")
    testbed.build_image("alpha", ref, "one", cmd=LOOP)
    images_to_remove.append((alpha, ref))
    testbed.push("alpha", ref)
    front = RegistryStandIn(testbed.registry)
    try:
        front_ref = f"{front.addr}/{repo}:1.0"
        alpha.docker("pull", front_ref)
        images_to_remove.append((alpha, front_ref))
        name = f"auto-{unique}"
        containers_to_remove.append((alpha, name))
        alpha.docker("run", "-d", "--network", "none", "--name", name, front_ref)
        host = make_host(alpha)
        sync(host)
        container = Container.objects.get(host=host, name=name)
        AutoUpdate.objects.create(container=container, enabled=True)
        testbed.build_image("beta", ref, "two", cmd=LOOP)
        images_to_remove.append((testbed.engines["beta"], ref))
        second = testbed.push("beta", ref)

        result = tasks.check_updates(container_keys=[container.key], force=True)
        assert result["updates"] == 1
        run = UpdateRun.objects.get(old_key=container.key)
        assert (run.trigger, run.status, run.target_digest) == (RunTrigger.AUTO, RunStatus.PENDING, second)
        assert run.queued_at is not None and run.slot == 1, "started within the host's limit"
    finally:
        front.stop()  # the registry goes away before the run pulls

    run = executor.execute(run.pk)
    assert run.status == RunStatus.FAILED and "Pulling" in run.error, run.log
    assert ContainerUpdate.objects.get(container_id=container.key).update_available is True
    assert tasks.auto_update_due() == 0, "no second try right after a failure"
    assert UpdateRun.objects.filter(old_key=container.key).count() == 1

    # Once the backoff has passed it is tried again; after a second failure it waits longer.
    first_wait, second_wait = autoupdate.retry_delay(1), autoupdate.retry_delay(2)
    assert second_wait == 2 * first_wait
    def failed_ago(run_id, delta):
        UpdateRun.objects.filter(pk=run_id).update(status=RunStatus.FAILED, finished_at=timezone.now() - delta - timedelta(seconds=1))

    failed_ago(run.pk, first_wait)
    assert tasks.auto_update_due() == 1
    retry = UpdateRun.objects.exclude(pk=run.pk).get(old_key=container.key)
    assert retry.trigger == RunTrigger.AUTO and retry.target_digest == second
    # The retry fails too; the next wait counts from that failure and is twice as long.
    failed_ago(run.pk, first_wait + first_wait)
    failed_ago(retry.pk, first_wait)
    assert tasks.auto_update_due() == 0, "two failures: the wait has doubled"
    failed_ago(run.pk, second_wait + first_wait)
    failed_ago(retry.pk, second_wait)
    assert tasks.auto_update_due() == 1


def test_backoff_counts_only_failed_auto_runs_of_the_offered_digest(make_host, alpha, unique):
    """A failed manual run, or a failure aimed at another digest, does not hold auto-update back."""
    host = make_host(alpha)
    short = uuid.uuid4().hex[:12]
    container = Container.objects.create(host=host, short_id=short, container_id=short + "0" * 52, name=f"bo-{unique}",
                                         image="127.0.0.1:5000/demo/app:1.0", state="running")
    offered = "sha256:" + "b" * 64
    ContainerUpdate.objects.create(container=container, status=UpdateStatus.UPDATE_AVAILABLE, update_available=True,
                                   latest_digest=offered)
    AutoUpdate.objects.create(container=container, enabled=True)
    now = timezone.now()
    common = {"host": host, "container_name": container.name, "old_key": container.key, "status": RunStatus.FAILED, "finished_at": now}
    UpdateRun.objects.create(trigger=RunTrigger.MANUAL, target_digest=offered, **common)
    UpdateRun.objects.create(trigger=RunTrigger.AUTO, target_digest="sha256:" + "c" * 64, **common)
    assert [r.container_id for r in autoupdate.candidates(now=now)] == [container.key]
    UpdateRun.objects.create(trigger=RunTrigger.AUTO, target_digest=offered, **common)
    assert autoupdate.candidates(now=now) == []
    assert autoupdate.candidates(now=now + autoupdate.retry_delay(1) + timedelta(seconds=1))
