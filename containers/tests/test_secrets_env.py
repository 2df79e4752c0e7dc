"""Secrets hygiene: a container's environment values never leave DockMon, whoever asks and
wherever (API, browser pages, admin), even for administrators. DockMon does not store them;
this proves no surface reads them from the engine on the way either."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.admin.utils import quote
from django.test import Client
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from containers.models import Event

pytestmark = pytest.mark.django_db


def _text(response) -> str:
    if hasattr(response, "streaming_content"):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def test_environment_values_appear_in_no_response(admin, django_user_model, make_host, alpha, run_container, sync_container, unique):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    host = make_host(alpha)
    name = f"envsecret-{unique}"
    cid = run_container(alpha, name, extra=("-e", f"SECRET_VALUE={secret}", "-e", f"DB_PASSWORD={secret}x", "--label", "app=envtest"))
    # The engine has it (the test could fail): it is only DockMon that must not pass it on.
    assert secret in alpha.docker("inspect", "-f", "{{json .Config.Env}}", cid).stdout
    row = sync_container(host, cid)
    event = Event.objects.filter(container_key=row.key).first()

    granted = django_user_model.objects.create_user(f"envviewer{unique}", password=None, is_staff=True)
    assign_perm("containers.view_dockerhost", granted, host)
    changer = django_user_model.objects.create_user(f"envchanger{unique}", password=None, is_staff=True)
    assign_perm("containers.change_container", changer, row)
    assign_perm("containers.view_container", changer, row)

    api_urls = [
        "/api/v1/containers/", f"/api/v1/containers/?search={name}", f"/api/v1/containers/{row.key}/",
        f"/api/v1/containers/{row.key}/settings/", f"/api/v1/containers/{row.key}/update-policy/",
        f"/api/v1/containers/{row.key}/logs/?tail=50", f"/api/v1/updates/{row.key}/", f"/api/v1/updates/{row.key}/explain/",
        "/api/v1/events/", f"/api/v1/events/?container={row.key}", f"/api/v1/hosts/{host.pk}/", "/api/v1/auto-restart/",
        f"/api/v1/auto-restart/{row.key}/",
    ]
    if event is not None:
        api_urls.append(f"/api/v1/events/{event.pk}/")
    page_urls = [
        "/", "/dashboard.json", "/containers/", f"/containers/{row.key}/", f"/hosts/{host.pk}/", "/hosts/", "/events/",
        "/updates/", "/health/", "/alerts/",
        "/admin/containers/container/", f"/admin/containers/container/{quote(row.key)}/change/", "/admin/containers/event/",
    ]
    checked = 0
    for user in (admin, granted, changer):
        api = APIClient()
        api.force_authenticate(user)
        browser = Client()
        browser.force_login(user)
        for client, urls in ((api, api_urls), (browser, page_urls)):
            for url in urls:
                response = client.get(url)
                assert response.status_code < 500, (user.username, url, response.status_code)
                body = _text(response)
                assert secret not in body, (user.username, url)
                if response.status_code == 200:
                    checked += 1
        # The container is there in what they read (so the absence of the value means something).
        assert name in _text(api.get(f"/api/v1/containers/{row.key}/"))
        assert name in _text(browser.get(f"/containers/{row.key}/"))
    assert checked >= 3 * 20
