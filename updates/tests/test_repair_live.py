"""Repair after a crash, on a real engine: orphaned backups are resolved (removed with a record,
given their name back, or kept and reported), and a run interrupted in its cleanup is finished."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from django.test import override_settings

from containers.engine import lifecycle as engine_lifecycle
from containers.models import Container, Event
from updates import crash_repair, executor, runqueue
from updates.choices import RunStage, RunStatus
from updates.models import ContainerUpdate, UpdateRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


def _inspect(eng, name):
    return json.loads(eng.docker("inspect", name).stdout)[0]


def _names(eng, name):
    out = eng.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}").stdout.split()
    return sorted(n for n in out if n == name or n.startswith(f"{name}-dockmon-backup-"))


def _dead_worker() -> str:
    """A worker id of this machine whose process has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait(10)
    return f"{socket.gethostname()}:{child.pid}"


@pytest.fixture
def image(testbed, repo, images_to_remove):
    ref = testbed.image_ref(repo, "1.0")
    testbed.build_image("alpha", ref, "one", cmd=LOOP)
    images_to_remove.append((testbed.engines["alpha"], ref))
    testbed.push("alpha", ref)
    return ref


def _run_row(host, name, status, **extra):
    return UpdateRun.objects.create(host=host, container_name=name, old_key=f"{host.pk}:{'0' * 12}", status=status, **extra)


def _backup_events(key):
    return list(Event.objects.filter(type="update.backup", container_key=key))


def test_a_backup_of_a_succeeded_run_is_removed_with_a_record(alpha, make_host, sync, image, unique, containers_to_remove):
    """GIVEN a backup `<name>-dockmon-backup-<run>` whose run succeeded, and `<name>` running the
    new release WHEN repair runs THEN the backup is removed, and the event log and the run say so."""
    name = f"rm-{unique}"
    host = make_host(alpha)
    run = _run_row(host, name, RunStatus.SUCCEEDED, was_running=True, log="done")
    backup = executor.backup_name(name, run.pk)
    containers_to_remove.extend([(alpha, name), (alpha, backup)])
    backup_id = alpha.docker("create", "--network", "none", "--name", backup, image).stdout.strip()
    alpha.docker("run", "-d", "--network", "none", "--name", name, image)
    sync(host)

    summary = crash_repair.repair(host_ids=[host.pk])
    assert {"backup": backup, "outcome": "removed"} in summary["backups"]
    assert _names(alpha, name) == [name]
    events = _backup_events(f"{host.pk}:{backup_id[:12]}")
    assert len(events) == 1 and "Removed the backup" in events[0].message and events[0].data["run"] == run.pk
    run.refresh_from_db()
    assert "[repair] Removed the backup" in run.log


def test_a_backup_whose_name_is_free_gets_it_back_and_keeps_its_desired_state(
    alpha, make_host, sync, image, unique, containers_to_remove
):
    """GIVEN a backup whose run failed after the rename (nothing runs under the name) and whose
    container was running, with a desired state a person set WHEN repair runs THEN it gets its
    name back, is started, and its desired state is still what the person set."""
    name = f"back-{unique}"
    host = make_host(alpha)
    run = _run_row(host, name, RunStatus.FAILED, was_running=True)
    backup = executor.backup_name(name, run.pk)
    containers_to_remove.extend([(alpha, name), (alpha, backup)])
    backup_id = alpha.docker("create", "--network", "none", "--name", backup, image).stdout.strip()
    sync(host)
    key = f"{host.pk}:{backup_id[:12]}"
    Container.objects.filter(pk=key).update(desired_state="running")

    summary = crash_repair.repair(host_ids=[host.pk])
    assert {"backup": backup, "outcome": "restored"} in summary["backups"]
    assert _names(alpha, name) == [name]
    now = _inspect(alpha, name)
    assert now["Id"] == backup_id and now["State"]["Running"] is True
    row = Container.objects.get(pk=key)
    assert (row.name, row.state, row.desired_state) == (name, "running", "running")
    events = _backup_events(key)
    assert len(events) == 1 and "got its name" in events[0].message and "was started" in events[0].message


def test_a_backup_whose_name_is_taken_is_kept_and_reported_once(alpha, make_host, sync, image, unique, containers_to_remove):
    """GIVEN a backup whose run was rolled back, and another container under its name WHEN repair
    runs (twice) THEN both containers stay, and the event log says so once."""
    name = f"kept-{unique}"
    host = make_host(alpha)
    run = _run_row(host, name, RunStatus.ROLLED_BACK, was_running=True)
    backup = executor.backup_name(name, run.pk)
    containers_to_remove.extend([(alpha, name), (alpha, backup)])
    backup_id = alpha.docker("create", "--network", "none", "--name", backup, image).stdout.strip()
    other_id = alpha.docker("run", "-d", "--network", "none", "--name", name, image).stdout.strip()
    sync(host)

    for _ in range(2):
        summary = crash_repair.repair(host_ids=[host.pk])
        assert {"backup": backup, "outcome": "kept"} in summary["backups"]
    assert _names(alpha, name) == sorted([name, backup])
    assert _inspect(alpha, name)["Id"] == other_id and _inspect(alpha, backup)["Id"] == backup_id
    events = _backup_events(f"{host.pk}:{backup_id[:12]}")
    assert len(events) == 1 and "Kept the backup" in events[0].message and "by hand" in events[0].message


class _Crash(BaseException):
    """Stands for the worker dying: nothing in the executor catches it."""


def test_a_crash_during_cleanup_is_finished_as_succeeded(testbed, alpha, make_host, sync, image, unique, containers_to_remove,
                                                        images_to_remove, monkeypatch):
    """GIVEN an update that passed its health gate and dies while removing the backup (fault
    injection: the removal raises what nothing catches, as a killed worker would stop there)
    WHEN repair runs THEN the backup is removed, the run succeeded, and the records are on the
    new container."""
    name = f"cln-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "none", "--name", name, image)
    host = make_host(alpha)
    sync(host)
    old = Container.objects.get(host=host, name=name)
    testbed.build_image("beta", image, "two", cmd=LOOP)
    images_to_remove.append((testbed.engines["beta"], image))
    second = testbed.push("beta", image)

    def crash(*args, **kwargs):
        raise _Crash()

    with override_settings(DOCKMON_UPDATE_GRACE_SECONDS=1.0, DOCKMON_UPDATE_STOP_TIMEOUT=2):
        run = runqueue.request_update(old, enqueue=False)
        monkeypatch.setattr(engine_lifecycle, "remove", crash)
        with pytest.raises(_Crash):
            executor.execute(run.pk)
        monkeypatch.undo()
    run.refresh_from_db()
    try:
        assert (run.status, run.stage, run.committed) == (RunStatus.RUNNING, RunStage.CLEANUP, True), run.log
        assert _names(alpha, name) == sorted([name, run.backup_name])
        UpdateRun.objects.filter(pk=run.pk).update(worker=_dead_worker())

        summary = crash_repair.repair(host_ids=[host.pk])
        assert summary["runs"] == [{"run": run.pk, "outcome": "succeeded"}]
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED and run.stage == RunStage.DONE, run.log
        assert "Removed the backup" in run.log
        assert _names(alpha, name) == [name], "the backup is gone, nothing else"
        now = _inspect(alpha, name)
        assert now["Id"][:12] == run.new_key.split(":")[1] and now["State"]["Running"]
        assert Container.objects.get(pk=old.key).replaced_by == run.new_key
        assert ContainerUpdate.objects.get(container_id=run.new_key).current_digest == second
        event = Event.objects.get(type="update.succeeded", data__run=run.pk)
        assert event.data["repaired"] is True and event.container_key == run.new_key
        # A second repair finds nothing more to do.
        again = crash_repair.repair(host_ids=[host.pk])
        assert again["runs"] == [] and not any(b["backup"].startswith(name) for b in again["backups"])
    finally:
        for n in _names(alpha, name):
            alpha.docker("rm", "-f", n, check=False)
