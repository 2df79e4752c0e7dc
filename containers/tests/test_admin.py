"""The admin back-office: hosts (with the connection test), containers and events."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from guardian.shortcuts import assign_perm

from containers.models import Container, DockerHost, Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(admin):
    client = Client()
    client.force_login(admin)
    return client


def _container(host, name):
    return Container.objects.create(host=host, short_id=name.ljust(12, "0")[:12], container_id=name.ljust(64, "0"), name=name)


def test_changelists_and_change_pages_render(browser, make_host, alpha):
    host = make_host(alpha)
    row = _container(host, "abc123")
    Event.objects.create(category="host", type="host.status", host=host, message="online")
    for url in ("/admin/containers/dockerhost/", f"/admin/containers/dockerhost/{host.pk}/change/",
                "/admin/containers/container/", f"/admin/containers/container/{row.pk}/change/",
                "/admin/containers/event/", "/admin/containers/tag/", "/admin/accounts/apitoken/",
                "/admin/containers/container/?state__exact=running&present=yes"):
        response = browser.get(url)
        assert response.status_code == 200, url


def test_test_connection_action_records_status(browser, make_host, alpha):
    good = make_host(alpha)
    bad = DockerHost.objects.create(name="nowhere", url="unix:///nonexistent.sock")
    response = browser.post("/admin/containers/dockerhost/", {"action": "test_connection", "_selected_action": [good.pk, bad.pk]}, follow=True)
    text = response.content.decode()
    assert "online, Docker 20.10" in text and "socket does not exist" in text
    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.status, bad.status) == ("online", "offline")


def test_adding_a_host_in_the_admin_validates_like_the_api(browser, alpha):
    response = browser.post("/admin/containers/dockerhost/add/", {"name": "bad", "url": "http://x", "enabled": "on"})
    assert response.status_code == 200 and "Unsupported scheme" in response.content.decode()
    assert not DockerHost.objects.filter(name="bad").exists()
    response = browser.post("/admin/containers/dockerhost/add/", {"name": "good", "url": alpha.unix_url, "enabled": "on"})
    assert response.status_code == 302
    assert DockerHost.objects.get(name="good").status == "online"


def test_the_tls_key_is_never_shown_and_kept_when_left_empty(browser, beta):
    pem = {k: open(v).read() for k, v in beta.tls.items()}
    host = DockerHost.objects.create(name="tls", url=beta.tcp_url, tls_ca=pem["ca"], tls_cert=pem["cert"], tls_key=pem["key"])
    page = browser.get(f"/admin/containers/dockerhost/{host.pk}/change/").content.decode()
    assert "PRIVATE KEY" not in page
    response = browser.post(f"/admin/containers/dockerhost/{host.pk}/change/", {"name": "tls2", "url": beta.tcp_url, "enabled": "on"})
    assert response.status_code == 302
    host.refresh_from_db()
    assert host.name == "tls2" and host.tls_key == pem["key"]


def test_staff_see_only_permitted_hosts_and_containers(make_host, alpha):
    staff = get_user_model().objects.create_user("staffer", password="pw-staffer-12", is_staff=True)
    mine, other = make_host(alpha, name="mine"), make_host(alpha, name="other")
    _container(mine, "m1")
    _container(other, "o1")
    assign_perm("containers.view_dockerhost", staff, mine)
    client = Client()
    client.force_login(staff)
    # Guardian's admin allows object-permitted users in; only their objects are listed.
    hosts = client.get("/admin/containers/dockerhost/")
    assert hosts.status_code == 200
    body = hosts.content.decode()
    assert "mine" in body and ">other<" not in body
    assert client.get(f"/admin/containers/dockerhost/{other.pk}/change/").status_code in (302, 403, 404)
    containers = client.get("/admin/containers/container/").content.decode()
    assert "m1" in containers and "o1" not in containers
    # Viewing is not changing: the host's change form is read-only for this user.
    assert client.post(f"/admin/containers/dockerhost/{mine.pk}/change/", {"name": "renamed", "url": alpha.unix_url}).status_code == 403
