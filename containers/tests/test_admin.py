"""The admin back-office: hosts (with the connection test), containers and events."""

from __future__ import annotations

import re

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


# ---------------------------------------------------------------------------
# Container actions against a real engine (transactional: the operations run in worker
# threads with their own database connections, which must see the rows)
# ---------------------------------------------------------------------------
def _staff(username, *perms_on):
    user = get_user_model().objects.create_user(username, password=None, is_staff=True)
    for perm, obj in perms_on:
        assign_perm(perm, user, obj)
    client = Client()
    client.force_login(user)
    return user, client


def _running(engine, name) -> str:
    result = engine.docker("inspect", "-f", "{{.State.Running}}", name, check=False)
    return result.stdout.strip() if result.returncode == 0 else "gone"


def _act(client, action, *keys, **extra):
    return client.post("/admin/containers/container/", {"action": action, "_selected_action": list(keys), **extra}, follow=True)


def _messages(response) -> str:
    """The admin's messages on the page (as sent: the page capitalises them)."""
    return " | ".join(str(m) for m in response.context["messages"]) if response.context and "messages" in response.context else ""


@pytest.mark.django_db(transaction=True)
def test_a_staff_user_who_may_only_view_is_refused_every_operation(make_host, alpha, run_container, sync_container, unique):
    host = make_host(alpha)
    name = f"adminop-{unique}"
    row = sync_container(host, run_container(alpha, name))
    user, client = _staff(f"viewer{unique}", ("containers.view_dockerhost", host))
    page = client.get("/admin/containers/container/")
    assert page.status_code == 200
    # Who may operate nothing is offered no operation (the actions declare `operate`)...
    assert 'value="op_stop"' not in page.content.decode() and 'value="op_rename"' not in page.content.decode()
    for action in ("op_stop", "op_kill", "op_remove_force", "op_rename"):
        response = _act(client, action, row.key)
        assert response.status_code == 200, action
        assert "done" not in _messages(response), action  # the POST runs no action at all
        assert _running(alpha, name) == "true", action  # nothing happened on the engine
    # ...and who may operate some other container gets the actions, refused on this one.
    other = Container.objects.create(host=host, short_id="0" * 12, container_id="0" * 64, name=f"other-{unique}")
    assign_perm("containers.operate_container", user, other)
    assert 'value="op_stop"' in client.get("/admin/containers/container/").content.decode()
    for action in ("op_stop", "op_kill", "op_pause", "op_restart", "op_remove", "op_remove_force"):
        response = _act(client, action, row.key)
        assert response.status_code == 200, action
        assert "may view this container but not operate it" in _messages(response), action
        assert _running(alpha, name) == "true", action  # nothing happened on the engine
    response = _act(client, "op_rename", row.key)
    assert "may view this container but not operate it" in _messages(response)
    assert alpha.docker("inspect", "-f", "{{.Name}}", name).stdout.strip() == f"/{name}"

    # The same user with operate on it: the same action now stops it.
    assign_perm("containers.operate_container", user, row)
    response = _act(client, "op_stop", row.key)
    assert "stop: 1 container(s) done." in _messages(response)
    assert _running(alpha, name) == "false"


@pytest.mark.django_db(transaction=True)
def test_remove_without_force_leaves_a_running_container_and_force_removes_it(browser, make_host, alpha, run_container,
                                                                              sync_container, unique):
    host = make_host(alpha)
    name = f"adminrm-{unique}"
    row = sync_container(host, run_container(alpha, name))
    text = _messages(_act(browser, "op_remove", row.key))
    assert "is running: stop it first or remove with force" in text
    assert _running(alpha, name) == "true"
    text = _messages(_act(browser, "op_remove_force", row.key))
    assert "remove (force): 1 container(s) done." in text
    assert _running(alpha, name) == "gone"
    assert Container.objects.get(pk=row.key).removed_at is not None


@pytest.mark.django_db(transaction=True)
def test_rename_action_asks_for_the_new_names_then_renames_on_the_engine(browser, make_host, alpha, run_container,
                                                                         sync_container, unique):
    host = make_host(alpha)
    first = sync_container(host, run_container(alpha, f"rnone-{unique}"))
    second = sync_container(host, run_container(alpha, f"rntwo-{unique}"))
    page = _act(browser, "op_rename", first.key, second.key)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Rename containers" in body and f'value="rnone-{unique}"' in body and f'value="rntwo-{unique}"' in body
    from containers.admin import RenameForm

    fields = {RenameForm.field_name(first): f"rnone-{unique}-new", RenameForm.field_name(second): f"rntwo-{unique}"}
    # An invalid name shows the form again with the error; nothing is renamed.
    bad = _act(browser, "op_rename", first.key, second.key, apply="1", **{**fields, RenameForm.field_name(first): "-bad name"})
    assert "Use letters, digits" in bad.content.decode()
    assert alpha.docker("inspect", "-f", "{{.Name}}", first.container_id).stdout.strip() == f"/rnone-{unique}"

    done = _act(browser, "op_rename", first.key, second.key, apply="1", **fields)
    assert f"rnone-{unique} renamed to rnone-{unique}-new." in _messages(done)
    assert alpha.docker("inspect", "-f", "{{.Name}}", first.container_id).stdout.strip() == f"/rnone-{unique}-new"
    assert alpha.docker("inspect", "-f", "{{.Name}}", second.container_id).stdout.strip() == f"/rntwo-{unique}"  # unchanged
    assert Container.objects.get(pk=first.key).name == f"rnone-{unique}-new"


# ---------------------------------------------------------------------------
# What another user's objects look like to an outsider
# ---------------------------------------------------------------------------
def test_another_users_objects_are_not_found_for_an_outsider(make_host, alpha):
    from django.contrib.admin.utils import quote

    mine, theirs = make_host(alpha, name="mine"), make_host(alpha, name="theirs")
    their_row = _container(theirs, "t1")
    their_event = Event.objects.create(category="container", type="container.state", host=theirs, container_key=their_row.key,
                                       message="their event")
    _, client = _staff("outsider", ("containers.view_dockerhost", mine))
    for url in (f"/admin/containers/container/{quote(their_row.pk)}/change/", f"/admin/containers/container/{quote(their_row.pk)}/history/",
                f"/admin/containers/container/{quote(their_row.pk)}/delete/", f"/admin/containers/dockerhost/{theirs.pk}/change/",
                f"/admin/containers/event/{their_event.pk}/change/"):
        assert client.get(url).status_code == 404, url
    # The granted user of that host sees the same pages.
    _, granted = _staff("insider", ("containers.view_dockerhost", theirs))
    assert granted.get(f"/admin/containers/container/{quote(their_row.pk)}/change/").status_code == 200
    assert granted.get(f"/admin/containers/event/{their_event.pk}/change/").status_code == 200


def test_a_staff_user_granted_a_host_sees_that_hosts_events_only(make_host, alpha):
    host_a, host_b = make_host(alpha, name="evhosta"), make_host(alpha, name="evhostb")
    a1, a2 = _container(host_a, "evaone"), _container(host_a, "evatwo")
    for host, row in ((host_a, a1), (host_a, a2), (host_b, _container(host_b, "evbone"))):
        Event.objects.create(category="container", type="container.state", host=host, container_key=row.key,
                             container_name=row.name, message=f"state-of-{row.name}")
    Event.objects.create(category="system", type="system.retention", message="system-wide-event")
    _, by_host = _staff("evhost", ("containers.view_dockerhost", host_a))
    _, by_container = _staff("evone", ("containers.view_container", a1))
    page = by_host.get("/admin/containers/event/")
    assert page.status_code == 200  # no model permission needed: the grant is enough
    text = page.content.decode()
    assert "state-of-evaone" in text and "state-of-evatwo" in text
    assert "state-of-evbone" not in text and "system-wide-event" not in text
    text = by_container.get("/admin/containers/event/").content.decode()
    assert "state-of-evaone" in text and "state-of-evatwo" not in text and "state-of-evbone" not in text
    # Filters and search do not reach past the rule.
    assert "state-of-evbone" not in by_host.get("/admin/containers/event/", {"host__id__exact": host_b.pk, "q": "evbone"}).content.decode()
    # A staff user with no grant at all gets no event screen.
    _, nobody = _staff("evnobody")
    assert nobody.get("/admin/containers/event/").status_code == 403


def test_tag_counts_are_of_what_the_user_may_see(browser, make_host, alpha):
    from containers.models import ContainerTag, Tag

    host_a, host_b = make_host(alpha, name="taghosta"), make_host(alpha, name="taghostb")
    tag = Tag.objects.create(name="shared-tag")
    compose = Tag.objects.create(name="compose:shop")
    Tag.objects.create(name="lonely-tag")
    for host, name in ((host_a, "tga1"), (host_b, "tgb1"), (host_b, "tgb2")):
        ContainerTag.objects.create(container=_container(host, name), tag=tag)
    ContainerTag.objects.create(container=Container.objects.get(name="tga1"), tag=compose, source="compose")
    user, client = _staff("tagviewer", ("containers.view_dockerhost", host_a))
    user.user_permissions.add(*__import__("django.contrib.auth.models", fromlist=["Permission"]).Permission.objects.filter(
        codename="view_tag"))

    def count(c, name, **params):
        response = c.get("/admin/containers/tag/", {"q": name, **params})
        assert response.status_code == 200
        match = re.search(r'<td class="field-n_containers">(\d+)</td>', response.content.decode())
        return int(match.group(1)) if match else None

    assert count(browser, "shared-tag") == 3
    assert count(client, "shared-tag") == 1  # two of its containers are on a host this user cannot see
    assert count(client, "compose:shop", origin="compose") == 1
    assert count(client, "shared-tag", origin="compose") is None
    assert count(browser, "lonely-tag", origin="unused") == 0


def test_stats_and_disk_usage_are_searchable_by_host(browser, make_host, alpha):
    from django.utils import timezone

    from containers.models import DiskUsage, StatsBatch

    findme, other = make_host(alpha, name="findme-host"), make_host(alpha, name="other-host")
    for host in (findme, other):
        DiskUsage.objects.create(host=host, images_count=3)
        StatsBatch.objects.create(host=host, ts=timezone.now(), data={"_host": []})
    for url in ("/admin/containers/diskusage/", "/admin/containers/statsbatch/"):
        text = browser.get(url, {"q": "findme"}).content.decode()
        listed = re.findall(r'class="field-host[^"]*"[^>]*>(?:<a [^>]*>)?([^<]+)<', text)
        assert listed == ["findme-host"], (url, listed)
