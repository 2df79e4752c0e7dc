"""Admin screens of the health-check models: lists, filters, search, actions, and the same
object permissions as the API."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from containers.models import Container, DockerHost
from healthchecks.models import AutoRestartConfig, CheckResult, HealthCheck, RestartAttempt

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(unique):
    host = DockerHost.objects.create(name=f"adm-{unique}", url="unix:///nonexistent.sock")
    other = DockerHost.objects.create(name=f"adm-other-{unique}", url="unix:///nonexistent2.sock")
    mine = Container.objects.create(host=host, container_id="c" * 64, short_id="c" * 12, name=f"mine-{unique}", state="running")
    theirs = Container.objects.create(host=other, container_id="d" * 64, short_id="d" * 12, name=f"theirs-{unique}", state="running")
    check = HealthCheck.objects.create(container=mine, name=f"mine-check-{unique}", url="http://127.0.0.1:9/")
    other_check = HealthCheck.objects.create(container=theirs, name=f"their-check-{unique}", url="http://127.0.0.1:9/x")
    CheckResult.objects.create(health_check=check, status="failure", error=f"mine-error-{unique}")
    CheckResult.objects.create(health_check=other_check, status="failure", error=f"their-error-{unique}")
    AutoRestartConfig.objects.create(container=mine, attempts=3, gave_up_at=timezone.now())
    AutoRestartConfig.objects.create(container=theirs)
    RestartAttempt.objects.create(container=mine, trigger="die", attempt=1, due_at=timezone.now(), reason=f"mine-reason-{unique}")
    RestartAttempt.objects.create(container=theirs, trigger="die", attempt=1, due_at=timezone.now(), reason=f"their-reason-{unique}")
    return host, mine, check, other_check


def test_superuser_sees_every_list_with_filters_and_search(admin, rows):
    client = Client()
    client.force_login(admin)
    for path in ("healthcheck", "checkresult", "autorestartconfig", "restartattempt"):
        assert client.get(f"/admin/healthchecks/{path}/").status_code == 200, path
        assert client.get(f"/admin/healthchecks/{path}/", {"q": "mine"}).status_code == 200, path
    assert client.get("/admin/healthchecks/healthcheck/", {"status__exact": "unknown"}).status_code == 200
    assert client.get(f"/admin/healthchecks/healthcheck/{rows[2].pk}/change/").status_code == 200


def test_a_staff_user_sees_only_the_rows_of_their_host_and_actions_apply_to_them(django_user_model, rows, unique):
    host, mine, check, other_check = rows
    staff = django_user_model.objects.create_user(f"staff{unique}", is_staff=True)
    assign_perm("containers.view_dockerhost", staff, host)
    assign_perm("containers.change_dockerhost", staff, host)
    client = Client()
    client.force_login(staff)
    for path, mine_text, their_text in (("healthcheck", "mine-check", "their-check"), ("checkresult", "mine-error", "their-error"),
                                        ("restartattempt", "mine", "theirs")):
        body = client.get(f"/admin/healthchecks/{path}/").content.decode()
        assert f"{mine_text}-{unique}" in body, path
        assert f"{their_text}-{unique}" not in body, path
    assert client.get(f"/admin/healthchecks/healthcheck/{other_check.pk}/change/").status_code in (302, 403, 404)
    # Actions only touch what they may change.
    client.post("/admin/healthchecks/healthcheck/", {"action": "disable", "_selected_action": [check.pk, other_check.pk]})
    assert HealthCheck.objects.get(pk=check.pk).enabled is False
    assert HealthCheck.objects.get(pk=other_check.pk).enabled is True
    client.post("/admin/healthchecks/autorestartconfig/", {"action": "reset_guard",
                                                           "_selected_action": list(AutoRestartConfig.objects.values_list("pk", flat=True))})
    config = AutoRestartConfig.objects.get(container=mine)
    assert config.attempts == 0 and config.gave_up_at is None
    assert RestartAttempt.objects.get(container=mine).status == "skipped"  # a reset cancels what was pending


def test_run_now_action_records_a_result(admin, rows):
    check = rows[2]
    client = Client()
    client.force_login(admin)
    response = client.post("/admin/healthchecks/healthcheck/", {"action": "run_now", "_selected_action": [check.pk]}, follow=True)
    assert response.status_code == 200
    assert "Connection refused" in response.content.decode()
    assert CheckResult.objects.filter(health_check=check).count() == 2


def test_the_admin_form_validates_the_url_and_the_status_spec_like_the_api(admin, rows):
    host, mine, check, other_check = rows
    client = Client()
    client.force_login(admin)
    base = {"container": mine.pk, "name": "form", "method": "GET", "expected_status": "200-299, 301", "body_keyword": "",
            "basic_auth_user": "", "timeout_seconds": "5", "interval_seconds": "30", "follow_redirects": "on", "verify_tls": "on",
            "tls_ca": "", "failure_threshold": "3", "success_threshold": "1", "enabled": "on", "url": "http://127.0.0.1:8080/health"}
    for field, value, text in (("url", "http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
                               ("url", "ftp://127.0.0.1/", "http"),
                               ("expected_status", "200-1000", "1000"),
                               ("expected_status", "ok", "not a status code"),
                               ("timeout_seconds", "30", "shorter than the interval"),
                               ("tls_ca", "not a certificate", "PEM")):
        response = client.post("/admin/healthchecks/healthcheck/add/", {**base, field: value})
        assert response.status_code == 200, (field, value)  # the form again, with the error
        assert text in response.content.decode(), (field, value)
        assert not HealthCheck.objects.filter(name="form").exists()
    response = client.post("/admin/healthchecks/healthcheck/add/", base)
    assert response.status_code == 302
    saved = HealthCheck.objects.get(name="form")
    assert saved.expected_status == "200-299,301" and saved.url == "http://127.0.0.1:8080/health"
