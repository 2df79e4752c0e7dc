"""The health-check and auto-restart API: fields, validation, permissions (administrator, a user
granted the host with change, one granted view only, an outsider), test/ and results/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from healthchecks.models import AutoRestartConfig, CheckResult, HealthCheck, RestartAttempt
from testkit.receivers import LoopbackServer

pytestmark = pytest.mark.django_db
URL = "/api/v1/health-checks/"


@pytest.fixture
def people(people):
    """Two hosts, a healthy running container on the first (testkit/people.py)."""
    return people.on_two_hosts(container={"state": "running", "health": "healthy"}, other={"state": "running"})


def _body(people, **extra):
    return {"container": people.container.key, "url": "http://127.0.0.1:8080/health", "expected_status": "200-299,301",
            "interval_seconds": 30, "timeout_seconds": 5, **extra}


def test_create_read_update_delete_with_secrets_never_returned(people):
    client = people.client("changer")
    response = client.post(URL, _body(people, headers={"X-Api-Key": "hdr-secret"}, basic_auth_user="me",
                                      basic_auth_password="pw-secret"), format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["container"] == people.container.key and data["container_name"] == people.container.name
    assert data["container_health"] == "healthy"  # Docker's own HEALTHCHECK status, beside DockMon's
    assert data["status"] == "unknown" and data["consecutive_failures"] == 0 and data["last_checked_at"] is None
    assert data["header_names"] == ["X-Api-Key"] and data["has_basic_auth_password"] is True
    assert "hdr-secret" not in response.content.decode() and "pw-secret" not in response.content.decode()
    check = HealthCheck.objects.get(pk=data["id"])
    assert check.header_dict == {"X-Api-Key": "hdr-secret"} and check.basic_auth_password == "pw-secret"
    assert check.created_by == people.changer
    # Stored encrypted.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT headers, basic_auth_password FROM healthchecks_healthcheck WHERE id = %s", [check.pk])
        raw = cursor.fetchone()
    assert all(value.startswith("fernet:") and "secret" not in value for value in raw)

    detail = f"{URL}{check.pk}/"
    body = client.get(detail).content.decode()
    assert "pw-secret" not in body and "hdr-secret" not in body
    # Re-sending what was read (no secret) keeps the secret.
    response = client.patch(detail, {"interval_seconds": 60, "basic_auth_password": ""}, format="json")
    assert response.status_code == 200, response.content
    check.refresh_from_db()
    assert check.interval_seconds == 60 and check.basic_auth_password == "pw-secret"
    assert client.delete(detail).status_code == 204
    assert not HealthCheck.objects.exists()


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("url", "http://169.254.169.254/latest/meta-data/", "metadata"),
        ("url", "http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("url", "ftp://127.0.0.1/", "http"),
        ("url", "http://user:pw@127.0.0.1/", "basic-auth"),
        ("expected_status", "200-", "range"),
        ("expected_status", "2xx", "range"),
        ("expected_status", "299-200", "backwards"),
        ("interval_seconds", 5, "greater than or equal to 10"),
        ("interval_seconds", 3601, "less than or equal to 3600"),
        ("method", "DELETE", "valid choice"),
        ("tls_ca", "not a certificate", "PEM"),
        ("headers", {"Bad Name": "x"}, "header name"),
        ("failure_threshold", 0, "greater than or equal to 1"),
    ],
)
def test_bad_input_is_a_400_with_a_field_error(people, field, value, words):
    response = people.client("admin").post(URL, _body(people, **{field: value}), format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert words.lower() in " ".join(errors[field]).lower(), errors[field]


def test_cross_field_rules(people):
    client = people.client("admin")
    errors = client.post(URL, _body(people, timeout_seconds=30, interval_seconds=20), format="json").json()
    assert "timeout_seconds" in errors
    errors = client.post(URL, _body(people, method="HEAD", body_keyword="ok"), format="json").json()
    assert "body_keyword" in errors
    errors = client.post(URL, _body(people, basic_auth_password="x"), format="json").json()
    assert "basic_auth_user" in errors


def test_a_valid_custom_ca_is_accepted(people, testbed):
    with open(testbed.tls["ca"]) as handle:
        ca = handle.read()
    response = people.client("admin").post(URL, _body(people, url="https://127.0.0.1:8443/", tls_ca=ca), format="json")
    assert response.status_code == 201, response.content


def test_permissions_per_person(people):
    check = HealthCheck.objects.create(container=people.container, url="http://127.0.0.1:9/")
    other_check = HealthCheck.objects.create(container=people.other, url="http://127.0.0.1:9/other")
    detail = f"{URL}{check.pk}/"
    # Lists show exactly what each may view.
    assert {c["id"] for c in people.client("admin").get(URL).json()["results"]} == {check.pk, other_check.pk}
    for who in ("changer", "viewer", "operator"):
        assert [c["id"] for c in people.client(who).get(URL).json()["results"]] == [check.pk], who
    assert [c["id"] for c in people.client("outsider").get(URL).json()["results"]] == [other_check.pk]
    assert people.client("outsider").get(URL, {"container": people.container.key}).json()["count"] == 0
    # Details: 404 for outsiders, 403 for viewers on changes.
    assert people.client("outsider").get(detail).status_code == 404
    assert people.client("outsider").patch(detail, {"enabled": False}, format="json").status_code == 404
    assert people.client("viewer").get(detail).status_code == 200
    assert people.client("viewer").patch(detail, {"enabled": False}, format="json").status_code == 403
    assert people.client("viewer").delete(detail).status_code == 403
    assert people.client("changer").patch(detail, {"enabled": False}, format="json").status_code == 200
    # Creating needs change on the container: viewers 403, outsiders do not even see it.
    assert people.client("viewer").post(URL, _body(people), format="json").status_code == 403
    response = people.client("outsider").post(URL, _body(people), format="json")
    assert response.status_code == 400 and "container" in response.json()
    assert people.client("changer").post(URL, _body(people), format="json").status_code == 201
    # A check cannot be moved to another container.
    response = people.client("admin").patch(detail, {"container": people.other.key}, format="json")
    assert response.status_code == 400 and "container" in response.json()
    # test/: operate (or change) on the container; viewers 403, outsiders 404.
    assert people.client("viewer").post(f"{detail}test/").status_code == 403
    assert people.client("outsider").post(f"{detail}test/").status_code == 404
    # results/: anyone who may view.
    assert people.client("viewer").get(f"{detail}results/").status_code == 200
    assert people.client("outsider").get(f"{detail}results/").status_code == 404


def test_test_now_runs_the_check_and_returns_the_result(people):
    server = LoopbackServer(lambda request: (200, {}, b"ready"))
    try:
        check = HealthCheck.objects.create(container=people.container, url=server.url("/"),
                                           body_keyword="ready", next_due_at=timezone.now() + timedelta(minutes=5))
        due = check.next_due_at
        response = people.client("operator").post(f"{URL}{check.pk}/test/")
        assert response.status_code == 200, response.content
        data = response.json()
        assert data["ok"] is True and data["status_code"] == 200 and data["error"] == ""
        assert data["check"]["status"] == "healthy" and data["check"]["last_response_ms"] is not None
        check.refresh_from_db()
        assert check.next_due_at == due  # the schedule is untouched
        assert CheckResult.objects.filter(health_check=check).count() == 1
        # While it runs elsewhere (lease held), test/ says so instead of running twice.
        HealthCheck.objects.filter(pk=check.pk).update(lease_owner="worker", lease_expires_at=timezone.now() + timedelta(minutes=1))
        assert people.client("admin").post(f"{URL}{check.pk}/test/").status_code == 409
    finally:
        server.close()


def test_test_now_reports_a_refused_target(people):
    # A row written past the API (e.g. an old version): the probe still refuses it.
    check = HealthCheck.objects.create(container=people.container, url="http://169.254.169.254/")
    data = people.client("admin").post(f"{URL}{check.pk}/test/").json()
    assert data["ok"] is False and "may not reach" in data["error"]


def test_results_history_for_the_chart(people):
    check = HealthCheck.objects.create(container=people.container, url="http://127.0.0.1:9/")
    now = timezone.now()
    for minutes, status, ms in ((90, "success", 10), (30, "success", 20), (10, "failure", None), (1, "success", 30)):
        CheckResult.objects.create(health_check=check, ts=now - timedelta(minutes=minutes), status=status, response_ms=ms,
                                   status_code=200 if ms else None, error="" if ms else "Connection refused.")
    client = people.client("viewer")
    data = client.get(f"{URL}{check.pk}/results/", {"range": "1h"}).json()
    assert [p["status"] for p in data["points"]] == ["success", "failure", "success"]  # oldest first
    assert data["points"][0]["ts"].endswith("Z")
    assert data["summary"]["count"] == 3 and data["summary"]["failures"] == 1 and data["summary"]["avg_response_ms"] == 25.0
    assert client.get(f"{URL}{check.pk}/results/").json()["summary"]["count"] == 4  # default 24h
    response = client.get(f"{URL}{check.pk}/results/", {"range": "1y"})
    assert response.status_code == 400 and "range" in response.json()


def test_many_results_are_bucketed(people):
    from healthchecks.api import views

    check = HealthCheck.objects.create(container=people.container, url="http://127.0.0.1:9/")
    now = timezone.now()
    CheckResult.objects.bulk_create([
        CheckResult(health_check=check, ts=now - timedelta(seconds=10 * i), status="success" if i % 10 else "failure",
                    response_ms=100) for i in range(views.MAX_POINTS + 200)
    ])
    data = people.client("admin").get(f"{URL}{check.pk}/results/", {"range": "24h"}).json()
    assert data["bucketed"] is True and len(data["points"]) <= views.MAX_POINTS
    assert sum(p["count"] for p in data["points"]) == views.MAX_POINTS + 200
    assert all(p["response_ms"] == 100 for p in data["points"])


def test_auto_restart_settings_per_container(people):
    key = people.container.key
    url = f"/api/v1/auto-restart/{key}/"
    data = people.client("viewer").get(url).json()
    assert data["configured"] is False and data["enabled"] is True and data["attempts_list"] == []
    assert people.client("viewer").patch(url, {"max_retries": 5}, format="json").status_code == 403
    assert people.client("outsider").get(url).status_code == 404
    assert people.client("outsider").patch(url, {"max_retries": 5}, format="json").status_code == 404
    response = people.client("changer").patch(url, {"max_retries": 5, "initial_delay_seconds": 3}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["configured"] is True and response.json()["max_retries"] == 5
    response = people.client("changer").patch(url, {"max_delay_seconds": 1}, format="json")
    assert response.status_code == 400 and "max_delay_seconds" in response.json()
    response = people.client("changer").patch(url, {"backoff_factor": 0.5}, format="json")
    assert response.status_code == 400 and "backoff_factor" in response.json()
    config = AutoRestartConfig.objects.get(container=people.container)
    RestartAttempt.objects.create(container=people.container, trigger="die", attempt=1, due_at=timezone.now(), status="succeeded")
    AutoRestartConfig.objects.filter(pk=config.pk).update(attempts=5, gave_up_at=timezone.now())
    data = people.client("viewer").get(url).json()
    assert data["restart_loop"] is True and len(data["attempts_list"]) == 1
    assert people.client("viewer").get(f"{url}attempts/").json()["count"] == 1
    assert people.client("viewer").post(f"{url}reset/").status_code == 403
    data = people.client("changer").post(f"{url}reset/").json()
    assert data["attempts"] == 0 and data["restart_loop"] is False
    # Lists: only what each may see.
    assert [c["container"] for c in people.client("viewer").get("/api/v1/auto-restart/").json()["results"]] == [key]
    assert people.client("outsider").get("/api/v1/auto-restart/").json()["count"] == 0
    assert people.client("changer").delete(url).status_code == 204
    assert not AutoRestartConfig.objects.exists()


def test_auto_restart_through_the_container_settings_endpoint(people):
    url = f"/api/v1/containers/{people.container.key}/settings/"
    response = people.client("changer").patch(url, {"auto_restart": True}, format="json")
    assert response.status_code == 200, response.content
    assert AutoRestartConfig.objects.get(container=people.container).enabled is True
    people.client("changer").patch(url, {"auto_restart": False}, format="json")
    assert AutoRestartConfig.objects.get(container=people.container).enabled is False
