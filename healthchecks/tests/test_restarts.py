"""Auto-restart: the rules (no engine needed), and end to end against a real engine with the
real monitor process recording the container's deaths."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from containers import bus, operations
from containers.models import Container, DockerHost, Event
from containers.signals import container_rekeyed
from healthchecks import probe, restarts, tasks
from healthchecks.models import AutoRestartConfig, HealthCheck, RestartAttempt
from healthchecks.tests.conftest import run_once
from testkit.testing import wait_for


def _row(unique, name="app", **extra):
    host = DockerHost.objects.create(name=f"h-{unique}-{name}", url="unix:///nonexistent.sock")
    return Container.objects.create(host=host, container_id=(unique * 8)[:64], short_id=unique[:8] + "0000", name=f"{name}-{unique}",
                                    state="running", **extra)


def _die(container, exit_code=1):
    """What the monitor emits when a running container dies."""
    Container.objects.filter(pk=container.pk).update(state="exited", exit_code=exit_code)
    bus.emit("container.state", category="container", host=container.host_id, container=container,
             data={"key": container.key, "state": "exited", "previous_state": "running", "exit_code": exit_code})


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_delays_grow_by_the_factor_and_are_capped(unique):
    config = AutoRestartConfig(container=_row(unique), initial_delay_seconds=5, backoff_factor=3, max_delay_seconds=60)
    assert [config.delay_for(n) for n in range(1, 6)] == [5, 15, 45, 60, 60]


@pytest.mark.django_db
def test_a_die_schedules_growing_restarts_then_the_loop_guard_gives_up(unique):
    container = _row(unique)
    AutoRestartConfig.objects.create(container=container, max_retries=3, initial_delay_seconds=2, backoff_factor=2, max_delay_seconds=100)
    delays = []
    for _ in range(3):
        _die(container)
        attempt = RestartAttempt.objects.get(container=container, status="pending")
        assert (attempt.due_at - attempt.created_at).total_seconds() == attempt.delay_seconds
        delays.append(attempt.delay_seconds)
        _die(container)  # a second die while one is pending adds nothing
        assert RestartAttempt.objects.filter(container=container, status="pending").count() == 1
        RestartAttempt.objects.filter(pk=attempt.pk).update(status="succeeded")
    assert delays == [2, 4, 8]
    _die(container)
    assert not RestartAttempt.objects.filter(container=container, status="pending").exists()
    loop = Event.objects.get(type="container.restart_loop", container_key=container.key)
    assert loop.severity == "error" and loop.data["max_retries"] == 3
    config = AutoRestartConfig.objects.get(container=container)
    assert config.gave_up_at is not None and config.attempts == 3
    _die(container)  # left alone: no more attempts, no second loop event
    assert Event.objects.filter(type="container.restart_loop", container_key=container.key).count() == 1
    assert RestartAttempt.objects.filter(container=container).count() == 3
    # A person's reset clears the guard.
    restarts.reset(config)
    _die(container)
    assert RestartAttempt.objects.get(container=container, status="pending").attempt == 1


@pytest.mark.django_db
def test_the_counter_resets_after_a_healthy_run_of_reset_after_minutes(unique):
    container = _row(unique)
    now = timezone.now()
    AutoRestartConfig.objects.create(container=container, max_retries=2, reset_after_minutes=10, attempts=2,
                                     initial_delay_seconds=1)
    # It ran 11 minutes before dying: the earlier failures are forgotten.
    Container.objects.filter(pk=container.pk).update(started_at=now - timedelta(minutes=11), finished_at=now)
    container.refresh_from_db()
    assert restarts.request_restart(container, trigger="die", now=now).attempt == 1
    # The periodic sweep does the same for a container that keeps running.
    RestartAttempt.objects.all().update(status="succeeded")
    AutoRestartConfig.objects.filter(container=container).update(attempts=2, gave_up_at=now)
    Container.objects.filter(pk=container.pk).update(state="running", started_at=now - timedelta(minutes=5))
    assert restarts.reset_recovered(now=now) == 0
    assert restarts.reset_recovered(now=now + timedelta(minutes=6)) == 1
    config = AutoRestartConfig.objects.get(container=container)
    assert config.attempts == 0 and config.gave_up_at is None


@pytest.mark.django_db
def test_no_restart_for_stopped_on_purpose_disabled_or_unconfigured(unique):
    stopped = _row(unique, "stopped", desired_state="stopped")
    AutoRestartConfig.objects.create(container=stopped)
    disabled = _row(unique[::-1], "disabled")
    AutoRestartConfig.objects.create(container=disabled, enabled=False)
    bare = _row(unique.upper(), "bare")
    for container in (stopped, disabled, bare):
        _die(container)
    assert not RestartAttempt.objects.exists()


@pytest.mark.django_db
def test_due_attempts_are_claimed_once(unique):
    container = _row(unique)
    attempt = RestartAttempt.objects.create(container=container, trigger="die", attempt=1, due_at=timezone.now())
    future = RestartAttempt.objects.create(container=_row(unique[::-1], "b"), trigger="die", attempt=1,
                                           due_at=timezone.now() + timedelta(minutes=1))
    assert restarts.claim_due() == [attempt.pk]
    assert restarts.claim_due() == []  # claimed: a second claimer gets nothing
    attempt.refresh_from_db()
    future.refresh_from_db()
    assert attempt.status == "running" and future.status == "pending"
    # A claim whose worker died is closed after a while.
    assert restarts.fail_stale_claims(now=timezone.now() + restarts.STALE_CLAIM + timedelta(seconds=1)) == 1


@pytest.mark.django_db
def test_rows_follow_the_container_when_it_is_recreated(unique):
    old = _row(unique, "old")
    new = Container.objects.create(host=old.host, container_id="f" * 64, short_id="f" * 12, name=old.name, state="running")
    check = HealthCheck.objects.create(container=old, url="http://127.0.0.1:9/")
    AutoRestartConfig.objects.create(container=old, max_retries=7)
    pending = RestartAttempt.objects.create(container=old, trigger="die", attempt=1, due_at=timezone.now())
    container_rekeyed.send(sender=Container, old_key=old.key, new_key=new.key, old=old, new=new)
    check.refresh_from_db()
    pending.refresh_from_db()
    assert check.container_id == new.key
    assert AutoRestartConfig.objects.get(container=new).max_retries == 7
    assert pending.container_id == new.key and pending.status == "skipped"


# ---------------------------------------------------------------------------
# End to end on a real engine
# ---------------------------------------------------------------------------
def _drive(predicate, timeout: float, message: str):
    """Run the periodic due-restarts task (as beat would) until predicate() holds."""

    def step():
        tasks.run_due_restarts()
        return predicate()

    return wait_for(step, timeout=timeout, interval=0.2, message=message)


def _online(host):
    wait_for(lambda: DockerHost.objects.get(pk=host.pk).status == "online", timeout=20, message="host online")


def _state(engine, name):
    return engine.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_container_that_keeps_dying_is_restarted_with_growing_delays_then_left_alone(
    eager, alpha, make_host, monitor, containers_to_remove, unique
):
    host = make_host(alpha)
    monitor()
    _online(host)
    name = f"hc-crashy-{unique}"
    containers_to_remove.append((alpha, name))
    cid = alpha.docker("create", "--network", "none", "--name", name, "dockmon/busybox:latest", "sh", "-c", "sleep 1; exit 1").stdout.strip()
    key = f"{host.pk}:{cid[:12]}"
    wait_for(lambda: Container.objects.filter(pk=key).exists(), timeout=20, message="container recorded by the monitor")
    AutoRestartConfig.objects.create(container_id=key, max_retries=3, initial_delay_seconds=1, backoff_factor=2, max_delay_seconds=30)
    alpha.docker("start", name)

    for number in (1, 2, 3):
        attempt = wait_for(lambda n=number: RestartAttempt.objects.filter(container_id=key, attempt=n).first(), timeout=30,
                           message=f"restart {number} scheduled after the die")
        assert attempt.trigger == "die" and attempt.delay_seconds == 2 ** (number - 1)
        _drive(lambda a=attempt: RestartAttempt.objects.get(pk=a.pk).status != "running" and
               RestartAttempt.objects.get(pk=a.pk).status != "pending", timeout=30, message=f"restart {number} run")
        attempt.refresh_from_db()
        assert attempt.status == "succeeded" and attempt.action == "start", (attempt.status, attempt.error)
        assert attempt.claimed_at >= attempt.due_at  # not before its delay

    loop = wait_for(lambda: Event.objects.filter(type="container.restart_loop", container_key=key).first(), timeout=30,
                    message="restart loop event after the 4th death")
    assert loop.severity == "error"
    wait_for(lambda: _state(alpha, name) == "exited", timeout=15, message="container down for good")
    tasks.run_due_restarts()
    assert RestartAttempt.objects.filter(container_id=key).count() == 3
    assert _state(alpha, name) == "exited"
    logged = Event.objects.filter(type="container.auto_restart", container_key=key).values_list("data__attempt", flat=True)
    assert sorted(logged) == [1, 2, 3]
    assert Container.objects.get(pk=key).desired_state != "stopped"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_docker_stop_or_kill_by_a_person_is_not_undone(eager, alpha, make_host, monitor, containers_to_remove, unique):
    host = make_host(alpha)
    monitor()
    _online(host)
    name = f"hc-person-{unique}"
    containers_to_remove.append((alpha, name))
    script = 'trap "exit 0" TERM; while true; do sleep 1; done'
    cid = alpha.docker("run", "-d", "--network", "none", "--name", name, "dockmon/busybox:latest", "sh", "-c", script).stdout.strip()
    key = f"{host.pk}:{cid[:12]}"
    wait_for(lambda: Container.objects.filter(pk=key, state="running").exists(), timeout=20, message="running")
    AutoRestartConfig.objects.create(container_id=key, initial_delay_seconds=0)

    def stopped_on_purpose():
        row = Container.objects.get(pk=key)
        return row.state == "exited" and row.desired_state == "stopped"

    alpha.docker("stop", name)  # exits 0 on TERM
    wait_for(stopped_on_purpose, timeout=20, message="docker stop recorded as on purpose")
    alpha.docker("start", name)
    wait_for(lambda: Container.objects.filter(pk=key, state="running", desired_state="running").exists(), timeout=20,
             message="a start means it should run again")
    alpha.docker("kill", name)  # SIGKILL: exit 137, like a crash, but asked for
    wait_for(stopped_on_purpose, timeout=20, message="docker kill recorded as on purpose")
    tasks.run_due_restarts()
    assert not RestartAttempt.objects.filter(container_id=key).exists()
    assert _state(alpha, name) == "exited"

    # Control: the same container crashing by itself is restarted.
    alpha.docker("start", name)
    wait_for(lambda: Container.objects.filter(pk=key, state="running", desired_state="running").exists(), timeout=20, message="up")
    alpha.docker("exec", name, "sh", "-c", "kill -9 1 2>/dev/null; kill 1")  # PID 1 ends itself: no engine kill event
    _drive(lambda: RestartAttempt.objects.filter(container_id=key, status="succeeded").exists(), timeout=30, message="crash restarted")
    wait_for(lambda: _state(alpha, name) == "running", timeout=15, message="running again")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_stop_through_dockmon_is_not_undone(eager, alpha, make_host, monitor, containers_to_remove, unique):
    host = make_host(alpha)
    monitor()
    _online(host)
    name = f"hc-dmstop-{unique}"
    containers_to_remove.append((alpha, name))
    script = 'trap "exit 0" TERM; while true; do sleep 1; done'
    cid = alpha.docker("run", "-d", "--network", "none", "--name", name, "dockmon/busybox:latest", "sh", "-c", script).stdout.strip()
    key = f"{host.pk}:{cid[:12]}"
    container = wait_for(lambda: Container.objects.filter(pk=key, state="running").select_related("host").first(), timeout=20,
                         message="running")
    AutoRestartConfig.objects.create(container_id=key, initial_delay_seconds=0)
    operations.run(container, "stop", timeout=5)
    wait_for(lambda: Event.objects.filter(type="container.state", container_key=key, data__state="exited").exists(), timeout=20,
             message="the monitor saw the die")
    tasks.run_due_restarts()
    assert not RestartAttempt.objects.filter(container_id=key).exists()
    assert _state(alpha, name) == "exited"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_failing_check_with_auto_restart_restarts_the_container(eager, alpha, make_host, sync_container, httpd_container):
    cid, port, name = httpd_container("alive")
    container = sync_container(make_host(alpha), cid)
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: probe.probe(probe.ProbeSpec(url=url, timeout=1)).ok, timeout=15, message="httpd answering")
    AutoRestartConfig.objects.create(container=container, initial_delay_seconds=0, enabled=True)
    check = HealthCheck.objects.create(container=container, url=url, failure_threshold=2, auto_restart=True, timeout_seconds=2)
    run_once(check)
    assert check.status == "healthy"
    alpha.docker("exec", name, "rm", "/www/index.html")
    run_once(check)
    assert not RestartAttempt.objects.exists()  # one failure is below the threshold
    run_once(check)
    assert check.status == "unhealthy"
    attempt = RestartAttempt.objects.get(container=container)
    assert attempt.trigger == "health_check" and attempt.health_check_id == check.pk
    tasks.run_due_restarts()
    attempt.refresh_from_db()
    assert attempt.status == "succeeded" and attempt.action == "restart", attempt.error
    # The restarted container wrote its page again.
    wait_for(lambda: probe.probe(probe.ProbeSpec(url=url, timeout=1)).ok, timeout=15, message="page back after restart")
    run_once(check)
    assert check.status == "healthy"
    assert Event.objects.filter(type="container.auto_restart", container_key=container.key, data__status="succeeded").exists()
