"""Object permissions on the live WebSocket stream, against a real engine, monitor and daphne:
a grant on one container, and a grant given while the client is connected."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.models import APIToken
from containers.models import Container, DockerHost
from dockmon_site import realtime
from testkit.testing import WSClient, wait_for

pytestmark = pytest.mark.slow


def _ws(daphne, user) -> WSClient:
    _, raw = APIToken.issue(user, name="ws")
    client = WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/", headers={"Authorization": f"Token {raw}"})
    client.wait_for(lambda m: m["type"] == "hello", timeout=5)
    return client


def _row(host, cid):
    return wait_for(lambda: Container.objects.filter(pk=f"{host.pk}:{cid[:12]}").first(), 15, message="container row")


def _about(messages, key):
    return [m for m in messages if m["data"].get("key") == key]


def test_a_container_grant_shows_that_container_only(django_user_model, make_host, alpha, monitor, daphne, run_container, unique):
    host = make_host(alpha)
    monitor()
    wait_for(lambda: DockerHost.objects.get(pk=host.pk).status == "online", 15, message="host online")
    mine = _row(host, run_container(alpha, f"mine-{unique}"))
    theirs = _row(host, run_container(alpha, f"theirs-{unique}"))
    user = django_user_model.objects.create_user(f"one{unique}")
    assign_perm("containers.view_container", user, mine)
    ws = _ws(daphne, user)

    alpha.docker("stop", "-t", "0", theirs.name)
    alpha.docker("stop", "-t", "0", mine.name)
    ws.wait_for(lambda m: m["type"] == "container.state" and m["data"]["key"] == mine.key and m["data"]["state"] == "exited")
    # The stop of the other container happened first; anything about it would have come by now.
    wait_for(lambda: Container.objects.get(pk=theirs.key).state == "exited", 10, message="other container exited")
    ws.drain(0.5)
    assert not _about(ws.messages, theirs.key)
    ws.close()


def test_a_grant_given_while_connected_applies_to_the_open_socket(
    django_user_model, admin, make_host, alpha, monitor, daphne, run_container, unique
):
    host = make_host(alpha)
    monitor()
    wait_for(lambda: DockerHost.objects.get(pk=host.pk).status == "online", 15, message="host online")
    user = django_user_model.objects.create_user(f"late{unique}")
    ws = _ws(daphne, user)
    target = _row(host, run_container(alpha, f"target-{unique}"))
    # Not granted yet: the creation is not shown.
    ws.drain(1.0)
    assert not _about(ws.messages, target.key)

    api = APIClient()
    api.force_authenticate(admin)
    response = api.post("/api/v1/permissions/", {"user": user.pk, "container": target.key, "permission": "view"}, format="json")
    assert response.status_code == 201, response.data
    # permissions.changed is on its way to every consumer before the next event exists.
    assert realtime.flush(5)
    alpha.docker("stop", "-t", "0", target.name)
    ws.wait_for(lambda m: m["type"] == "container.state" and m["data"]["key"] == target.key and m["data"]["state"] == "exited")
    assert not [m for m in ws.messages if m["type"] == "permissions.changed"]  # internal: never sent to clients

    # Revoked while connected: the next events stop at once.
    assert api.delete(f"/api/v1/permissions/{response.data['id']}/").status_code == 204
    assert realtime.flush(5)
    seen = len(ws.messages)
    alpha.docker("start", target.name)
    wait_for(lambda: Container.objects.get(pk=target.key).state == "running", 15, message="restarted")
    ws.drain(1.0)
    assert not _about(ws.messages[seen:], target.key)
    ws.close()


def test_a_container_grant_follows_the_container_recreated_under_a_new_key(
    django_user_model, make_host, alpha, monitor, daphne, run_container, unique
):
    """GIVEN a user granted one container only, connected to /ws/events/
    WHEN the container is removed and run again with the same name (a new key)
    THEN the grant moves to the new key and the open socket learns it at once: it receives
    container.recreated and the next container.state of the new key (not 30 s later)."""
    host = make_host(alpha)
    monitor()
    wait_for(lambda: DockerHost.objects.get(pk=host.pk).status == "online", 15, message="host online")
    name = f"phoenix-{unique}"
    old = _row(host, run_container(alpha, name))
    user = django_user_model.objects.create_user(f"only{unique}")
    assign_perm("containers.view_container", user, old)
    ws = _ws(daphne, user)

    alpha.docker("rm", "-f", name)
    ws.wait_for(lambda m: m["type"] == "container.removed" and m["data"]["key"] == old.key)
    new = _row(host, run_container(alpha, name))
    recreated = ws.wait_for(lambda m: m["type"] == "container.recreated" and m["data"].get("new_key") == new.key)
    assert recreated["data"]["old_key"] == old.key
    assert user.has_perm("containers.view_container", Container.objects.get(pk=new.key))

    alpha.docker("stop", "-t", "0", name)
    ws.wait_for(lambda m: m["type"] == "container.state" and m["data"]["key"] == new.key and m["data"]["state"] == "exited")
    ws.close()
