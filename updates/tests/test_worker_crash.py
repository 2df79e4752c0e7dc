"""A worker killed in the middle of an update: the next worker repairs it (real celery worker)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from django.test import override_settings

from containers.models import Container
from testkit import testing
from updates import crash_repair, runqueue
from updates.choices import ACTIVE_RUN_STATUSES, RunStage, RunStatus
from updates.models import UpdateRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


def _start_worker(queue: str) -> testing.ManagedProcess:
    argv = [sys.executable, "-m", "celery", "-A", "dockmon_site", "worker", "-Q", queue, "-c", "1", "-l", "info",
            "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"{queue}@%h"]
    env = testing.subprocess_env(DOCKMON_UPDATE_QUEUE=queue, DOCKMON_UPDATE_GRACE_SECONDS="1", DOCKMON_UPDATE_STOP_TIMEOUT="2")
    return testing.ManagedProcess("celery-worker", argv, env, testing.log_dir()).start()


def _kill_group(process: testing.ManagedProcess) -> None:
    # The whole process group: a prefork child left running would go on with the update.
    os.killpg(process.pid, signal.SIGKILL)
    process.stop()


def test_a_zombie_worker_process_counts_as_dead():
    """A killed worker's orphaned pool child stays a zombie where PID 1 does not reap; it runs nothing."""
    child = subprocess.Popen(["true"])
    try:
        testing.wait_for(lambda: open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] == "Z", timeout=10,
                         message="the child to exit unreaped")
        assert not crash_repair._pid_alive(child.pid)
    finally:
        child.wait(5)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert crash_repair._pid_alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait(5)
    assert not crash_repair._pid_alive(sleeper.pid)


def _names(eng, name):
    out = eng.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}").stdout.split()
    return sorted(n for n in out if n == name or n.startswith(f"{name}-dockmon-backup-"))


def test_killing_the_worker_mid_update_leaves_a_consistent_state(testbed, alpha, make_host, sync, repo, unique, images_to_remove,
                                                                 containers_to_remove):
    """GIVEN an update running in a real celery worker, waiting in its health gate
    WHEN the worker is killed with SIGKILL and a new worker starts
    THEN the original container runs under its name, there is no backup or duplicate, the run is
    closed with why, and the records are on the key of the container that runs."""
    ref = testbed.image_ref(repo, "1.0")
    testbed.build_image("alpha", ref, "one", cmd=LOOP)
    images_to_remove.append((alpha, ref))
    testbed.push("alpha", ref)
    name = f"crash-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "none", "--name", name, ref)
    before = json.loads(alpha.docker("inspect", name).stdout)[0]
    host = make_host(alpha)
    sync(host)
    container = Container.objects.get(host=host, name=name)
    # The new release's health check first runs after 30 s: the run waits in its health gate.
    testbed.build_image("beta", ref, "two", cmd=LOOP, healthcheck="--interval=30s --timeout=2s CMD true")
    images_to_remove.append((testbed.engines["beta"], ref))
    testbed.push("beta", ref)

    queue = f"dmtest-upd-{unique}"
    worker = _start_worker(queue)
    try:
        with override_settings(DOCKMON_UPDATE_QUEUE=queue):
            run = runqueue.request_update(container, health_timeout=120)
        testing.wait_for(lambda: UpdateRun.objects.get(pk=run.pk).stage == RunStage.HEALTH, timeout=90,
                         message=lambda: f"the run to reach its health gate; worker log: {worker.log()}")
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING and run.committed
        assert sorted(_names(alpha, name)) == sorted([name, f"{name}-dockmon-backup-{run.pk}"])
        _kill_group(worker)

        worker = _start_worker(queue)
        testing.wait_for(lambda: UpdateRun.objects.get(pk=run.pk).status not in ACTIVE_RUN_STATUSES, timeout=90,
                         message=lambda: f"the repair of the run; worker log: {worker.log()}")
    finally:
        _kill_group(worker)
        for n in _names(alpha, name):
            if n != name:
                containers_to_remove.append((alpha, n))

    run.refresh_from_db()
    assert run.status == RunStatus.ROLLED_BACK, run.log
    assert "worker" in run.error and "health" in run.error
    assert _names(alpha, name) == [name], "no backup left, no duplicate"
    now = json.loads(alpha.docker("inspect", name).stdout)[0]
    assert now["Id"] == before["Id"] and now["State"]["Running"] and now["Image"] == before["Image"]
    # Records: the running container's row is current, the removed new one points at it.
    row = Container.objects.get(pk=container.key)
    assert row.replaced_by == "" and row.removed_at is None and row.name == name
    new_row = Container.objects.get(pk=run.new_key)
    assert new_row.replaced_by == container.key and new_row.removed_at is not None
    assert Container.objects.filter(host=host, name=name, removed_at__isnull=True).count() == 1
