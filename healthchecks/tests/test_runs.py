"""Checks run through the real claim → run → record path against real endpoints: a busybox
httpd in a container on a real engine, and local servers in the test process."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from containers.models import Container, DockerHost, Event
from healthchecks import probe, runner, services
from healthchecks.models import CheckResult, HealthCheck
from healthchecks.tests.conftest import run_once
from testkit.testing import wait_for


def _rows_container(unique, name="svc"):
    host = DockerHost.objects.create(name=f"h-{unique}-{name}", url="unix:///nonexistent.sock")
    return Container.objects.create(host=host, container_id=(unique * 8)[:64], short_id=unique[:8] + "0000", name=f"{name}-{unique}",
                                    state="running")


def _health_events(check):
    return list(Event.objects.filter(type="health.status", data__check=check.pk).order_by("ts", "id"))


@pytest.mark.django_db
def test_thresholds_against_a_real_busybox_httpd(alpha, make_host, sync_container, httpd_container):
    cid, port, name = httpd_container("service-ok")
    container = sync_container(make_host(alpha), cid)
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: probe.probe(probe.ProbeSpec(url=url, timeout=1)).ok, timeout=15, message="httpd answering")
    check = HealthCheck.objects.create(container=container, url=url, body_keyword="service-ok", failure_threshold=3,
                                       success_threshold=2, timeout_seconds=2, interval_seconds=10)

    # Healthy after exactly success_threshold (2) successes.
    run_once(check)
    assert (check.status, check.consecutive_successes) == ("unknown", 1)
    run_once(check)
    assert check.status == "healthy" and check.last_status_code == 200 and check.last_response_ms is not None
    assert [(e.data["previous"], e.data["status"]) for e in _health_events(check)] == [("unknown", "healthy")]

    # Stop serving the page: unhealthy after exactly failure_threshold (3) failures.
    alpha.docker("exec", name, "rm", "/www/index.html")
    for expected in (1, 2):
        run_once(check)
        assert (check.status, check.consecutive_failures) == ("healthy", expected)
        assert check.last_status_code == 404
    run_once(check)
    assert (check.status, check.consecutive_failures) == ("unhealthy", 3)
    event = _health_events(check)[-1]
    assert event.category == "health" and event.severity == "warning" and event.container_key == container.key
    assert event.data["previous"] == "healthy" and event.data["status"] == "unhealthy" and "404" in event.data["error"]
    assert {"key", "check", "status", "previous", "response_ms", "error"} <= set(event.data)

    # The service goes away entirely: still unhealthy, now with the engine's refusal as the error.
    alpha.docker("stop", "-t", "0", name)
    run_once(check)
    assert check.status == "unhealthy" and check.consecutive_failures == 4 and check.last_error == "Connection refused."
    assert len(_health_events(check)) == 2  # no event without a change

    # Recover: healthy again after exactly 2 successes.
    alpha.docker("start", name)
    wait_for(lambda: probe.probe(probe.ProbeSpec(url=url, timeout=1)).ok, timeout=15, message="httpd back")
    run_once(check)
    assert (check.status, check.consecutive_successes) == ("unhealthy", 1)
    run_once(check)
    assert check.status == "healthy"
    assert [(e.data["previous"], e.data["status"]) for e in _health_events(check)][-1] == ("unhealthy", "healthy")
    statuses = list(CheckResult.objects.filter(health_check=check).order_by("ts", "id").values_list("status", flat=True))
    assert statuses == ["success"] * 2 + ["failure"] * 4 + ["success"] * 2
    # The Docker HEALTHCHECK status stays beside it (this image has none).
    assert check.container.health == "none"


@pytest.mark.django_db
def test_a_hanging_endpoint_times_out_and_is_recorded(hanging_server, unique):
    check = HealthCheck.objects.create(container=_rows_container(unique), url=hanging_server.url(), timeout_seconds=1,
                                       failure_threshold=1, interval_seconds=10)
    (result,) = run_once(check)
    assert not result.ok and result.error.startswith("Timed out")
    assert check.status == "unhealthy" and check.last_error.startswith("Timed out") and check.last_status_code is None
    row = CheckResult.objects.get(health_check=check)
    assert row.status == "failure" and row.error.startswith("Timed out") and row.response_ms >= 1000
    assert check.lease_owner == "" and check.lease_expires_at is None


@pytest.mark.django_db(transaction=True)
def test_a_hanging_check_never_holds_up_the_others(hanging_server, local_server, unique):
    """GIVEN one check against an endpoint that never answers (timeout 30 s) and ten healthy ones
    in the same batch WHEN the batch is handed to the worker's runner THEN every healthy result is
    recorded while the hanging one is still in flight (lease held, no result)."""
    container = _rows_container(unique)
    hanging = HealthCheck.objects.create(container=container, url=hanging_server.url(), timeout_seconds=30, interval_seconds=60)
    healthy = [HealthCheck.objects.create(container=container, url=local_server.url(f"/?n={i}"), interval_seconds=10)
               for i in range(10)]
    owner, ids = services.claim_due(limit=100)
    assert set(ids) == {hanging.pk, *(c.pk for c in healthy)}
    assert services.run_claimed(ids, owner) is None  # returns at once
    wait_for(lambda: CheckResult.objects.filter(health_check__in=healthy).count() == 10, timeout=20, message="healthy results")
    hanging.refresh_from_db()
    assert not CheckResult.objects.filter(health_check=hanging).exists() and hanging.lease_owner == owner
    assert HealthCheck.objects.filter(pk__in=[c.pk for c in healthy], status="healthy", lease_owner="").count() == 10
    # Cut the hanging connection so the test does not wait out the 30 s; it then fails as a failure.
    hanging_server.close()
    wait_for(lambda: CheckResult.objects.filter(health_check=hanging).exists(), timeout=20, message="hanging result")
    assert runner.drain(10)
    assert CheckResult.objects.get(health_check=hanging).status == "failure"


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_claimers_never_get_the_same_check(unique):
    container = _rows_container(unique)
    past = timezone.now() - timedelta(seconds=5)
    HealthCheck.objects.bulk_create([HealthCheck(container=container, url=f"http://127.0.0.1:9/{i}", next_due_at=past) for i in range(300)])
    # Every round all four claim at the same moment, so they race for the same due rows; one
    # thread could otherwise take all 300 before the others are scheduled.
    barrier = threading.Barrier(4, timeout=30)
    claims: dict[int, list[int]] = {n: [] for n in range(4)}
    errors: list = []

    def claimer(n):
        from django.db import connection

        try:
            for _ in range(20):
                barrier.wait()
                _, ids = services.claim_due(limit=25)
                claims[n].extend(ids)
        except Exception as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    every = [pk for ids in claims.values() for pk in ids]
    assert len(every) == len(set(every)) == 300  # all claimed, none twice
    assert sum(1 for ids in claims.values() if ids) >= 2  # they really competed
    # Held leases keep the rows from a later claimer until they end.
    assert services.claim_due(limit=1000)[1] == []
    assert services.claim_due(limit=1000, now=timezone.now() + timedelta(seconds=services.QUEUE_LEASE_SECONDS + 5))[1]


@pytest.mark.django_db
def test_a_result_is_dropped_when_the_lease_was_lost(local_server, unique):
    check = HealthCheck.objects.create(container=_rows_container(unique), url=local_server.url("/"))
    owner, ids = services.claim_due(limit=10)
    jobs = services.jobs_for(ids, owner)
    HealthCheck.objects.filter(pk=check.pk).update(lease_owner="someone-else")
    result = probe.probe(jobs[0].spec)
    assert services.record(check.pk, owner, result, started_at=timezone.now(), scheduled_at=jobs[0].scheduled_at) is None
    assert not CheckResult.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_dispatch_claims_due_enabled_checks_and_keeps_their_cadence(eager, local_server, unique):
    container = _rows_container(unique)
    now = timezone.now()
    due = [HealthCheck.objects.create(container=container, url=local_server.url(f"/?d={i}"), interval_seconds=10,
                                      next_due_at=now - timedelta(seconds=1)) for i in range(3)]
    later = HealthCheck.objects.create(container=container, url=local_server.url("/later"), next_due_at=now + timedelta(minutes=5))
    disabled = HealthCheck.objects.create(container=container, url=local_server.url("/off"), enabled=False, next_due_at=now)
    assert services.dispatch_due(lookahead=0, batch_size=2) == 3  # two batches
    wait_for(lambda: CheckResult.objects.count() == 3, timeout=20, message="three results")
    assert runner.drain(10)
    assert set(CheckResult.objects.values_list("health_check", flat=True)) == {c.pk for c in due}
    for check in due:
        old_due = check.next_due_at
        check.refresh_from_db()
        assert check.next_due_at == old_due + timedelta(seconds=10)  # cadence kept, not "now + interval"
        assert check.lease_owner == "" and check.status == "healthy"
        assert CheckResult.objects.get(health_check=check).scheduled_at == old_due
    for idle in (later, disabled):
        idle.refresh_from_db()
        assert idle.lease_owner == "" and idle.last_checked_at is None


def test_next_due_skips_missed_slots():
    base = timezone.now()
    assert services.next_due(base, 10, base + timedelta(seconds=3)) == base + timedelta(seconds=10)
    assert services.next_due(base, 10, base + timedelta(seconds=35)) == base + timedelta(seconds=40)
    assert services.next_due(None, 10, base) == base + timedelta(seconds=10)


@pytest.mark.django_db
def test_results_older_than_the_retention_are_purged(settings, unique):
    settings.DOCKMON_HEALTH_RESULT_RETENTION_DAYS = 7
    check = HealthCheck.objects.create(container=_rows_container(unique), url="http://127.0.0.1:9/")
    now = timezone.now()
    for days in (1, 6, 8, 30):
        CheckResult.objects.create(health_check=check, status="success", ts=now - timedelta(days=days))
    assert services.purge_results(now=now, chunk=1) == 2
    assert CheckResult.objects.count() == 2
