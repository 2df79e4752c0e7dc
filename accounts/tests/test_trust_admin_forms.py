"""Trust boundary in the Django admin's forms for outbound requests: the same rules as the API.
A health check's method other than GET/HEAD, and where a channel sends, are an administrator's
choice; a user granted `change` may still edit everything else. Uses the permission world
(accounts/tests/conftest.py)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from alerts.models import NotificationChannel
from healthchecks.models import HealthCheck

pytestmark = [pytest.mark.django_db, pytest.mark.trust]


def _staff_client(user) -> Client:
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def _check_form(check: HealthCheck, **changes) -> dict:
    form = {name: getattr(check, name) for name in (
        "name", "url", "method", "expected_status", "body_keyword", "basic_auth_user", "timeout_seconds", "interval_seconds",
        "tls_ca", "failure_threshold", "success_threshold")}
    form["container"] = check.container_id
    for flag in ("follow_redirects", "verify_tls", "auto_restart", "enabled"):
        if getattr(check, flag):
            form[flag] = "on"
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def test_admin_health_check_method_is_an_administrators_choice(world):
    """GIVEN a staff user granted `change` on a1 and a1's health check
    WHEN they set its method to POST in the admin form
    THEN a field error and nothing saved; a rename works; the owner may set POST."""
    assign_perm("containers.change_container", world.container_granted, world.a1)
    check = HealthCheck.objects.get(container=world.a1, name__startswith="hcA")
    url = f"/admin/healthchecks/healthcheck/{check.pk}/change/"
    client = _staff_client(world.container_granted)
    response = client.post(url, _check_form(check, method="POST"))
    assert response.status_code == 200 and "Only an administrator may send POST" in response.content.decode()
    assert HealthCheck.objects.get(pk=check.pk).method == "GET"
    assert client.post(url, _check_form(check, name="renamed-check")).status_code == 302
    owner = _staff_client(world.admin)
    assert owner.post(url, _check_form(HealthCheck.objects.get(pk=check.pk), method="POST")).status_code == 302
    stored = HealthCheck.objects.get(pk=check.pk)
    assert stored.method == "POST" and stored.method_approved_by == world.admin
    # Where that POST goes stays the administrator's choice too.
    response = client.post(url, _check_form(stored, url="http://127.0.0.1:8/other"))
    assert response.status_code == 200 and "only an administrator may change its URL" in response.content.decode()
    assert HealthCheck.objects.get(pk=check.pk).url == stored.url


def test_admin_health_check_url_passes_the_outbound_policy(world):
    check = HealthCheck.objects.get(container=world.a1, name__startswith="hcA")
    owner = _staff_client(world.admin)
    for target in ("http://127.0.0.1:2375/containers/json", "http://169.254.169.254/latest/meta-data/"):
        response = owner.post(f"/admin/healthchecks/healthcheck/{check.pk}/change/", _check_form(check, url=target))
        assert response.status_code == 200, target
        assert HealthCheck.objects.get(pk=check.pk).url == check.url


def test_admin_channel_destination_is_an_administrators_choice(world):
    channel = NotificationChannel.objects.create(name="admin-form-ntfy", kind="ntfy", config={"topic": "t", "base_url": "http://127.0.0.1:9/"})
    for action in ("view", "change"):
        assign_perm(f"alerts.{action}_notificationchannel", world.granted, channel)
    url = f"/admin/alerts/notificationchannel/{channel.pk}/change/"
    client = _staff_client(world.granted)

    def form(**config):
        return {"name": channel.name, "kind": "ntfy", "config": json.dumps(config), "enabled": "on"}

    response = client.post(url, form(topic="t", base_url="http://127.0.0.1:8/"))
    assert response.status_code == 200 and "Only an administrator may choose where a channel sends" in response.content.decode()
    assert NotificationChannel.objects.get(pk=channel.pk).config["base_url"] == "http://127.0.0.1:9/"
    assert client.post(url, form(topic="other", base_url="http://127.0.0.1:9/")).status_code == 302
    assert NotificationChannel.objects.get(pk=channel.pk).config["topic"] == "other"
    # The owner may point it, but not at a Docker engine port.
    owner = _staff_client(world.admin)
    response = owner.post(url, form(topic="t", base_url="http://127.0.0.1:2375/"))
    assert response.status_code == 200 and "base_url" in response.content.decode()
    assert owner.post(url, form(topic="t", base_url="http://127.0.0.1:8/")).status_code == 302
    assert NotificationChannel.objects.get(pk=channel.pk).config["base_url"] == "http://127.0.0.1:8/"
    # An outsider does not find it.
    assert _staff_client(world.outsider).post(url, form(topic="x", base_url="http://127.0.0.1:7/")).status_code in (302, 403, 404)
    assert NotificationChannel.objects.get(pk=channel.pk).config["topic"] == "t"
