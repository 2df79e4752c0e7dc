"""Container operations through the API against real engines over socket, TCP and TLS."""

from __future__ import annotations

import json

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from containers.models import Container, DockerHost, Event

pytestmark = pytest.mark.django_db

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


def _engine_state(engine, name):
    return engine.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()


@pytest.mark.parametrize("via", ["unix", "tcp", "tls"])
def test_every_operation_works_over_each_transport(via, admin_client, make_host, alpha, beta, run_container, sync_container, unique):
    engine = beta if via == "tls" else alpha
    host = make_host(engine, via=via)
    name = f"ops-{via}-{unique}"
    cid = run_container(engine, name, *LOOP)
    row = sync_container(host, cid)
    url = f"/api/v1/containers/{row.key}"

    response = admin_client.post(f"{url}/stop/", {"timeout": 5}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["state"] == "exited" and _engine_state(engine, name) == "exited"
    assert Container.objects.get(pk=row.key).desired_state == "stopped"

    assert admin_client.post(f"{url}/start/").data["state"] == "running"
    assert _engine_state(engine, name) == "running"
    assert admin_client.post(f"{url}/pause/").data["state"] == "paused"
    assert _engine_state(engine, name) == "paused"
    assert admin_client.post(f"{url}/unpause/").data["state"] == "running"
    restarted = admin_client.post(f"{url}/restart/", {"timeout": 2}, format="json").data
    assert restarted["state"] == "running" and restarted["started_at"] != row.started_at
    killed = admin_client.post(f"{url}/kill/").data
    assert killed["state"] == "exited" and killed["exit_code"] == 137

    renamed = admin_client.post(f"{url}/rename/", {"name": f"{name}-2"}, format="json")
    assert renamed.status_code == 200 and renamed.data["name"] == f"{name}-2"
    assert engine.docker("inspect", "-f", "{{.Name}}", cid).stdout.strip() == f"/{name}-2"

    admin_client.post(f"{url}/start/")
    refused = admin_client.delete(f"{url}/")
    assert refused.status_code == 409 and "force" in refused.data["detail"]
    assert admin_client.delete(f"{url}/?force=true").status_code == 204
    assert engine.docker("inspect", cid, check=False).returncode != 0
    assert Container.objects.get(pk=row.key).removed_at is not None
    actions = list(Event.objects.filter(type="container.operation", container_key=row.key).values_list("data__action", flat=True))
    assert {"stop", "start", "pause", "unpause", "restart", "kill", "rename", "remove"} <= set(actions)


def test_bad_input_is_a_400(admin_client, make_host, alpha, run_container, sync_container, unique):
    host = make_host(alpha)
    row = sync_container(host, run_container(alpha, f"bad-{unique}", *LOOP))
    url = f"/api/v1/containers/{row.key}"
    assert admin_client.post(f"{url}/rename/", {"name": "no spaces allowed"}, format="json").status_code == 400
    assert admin_client.post(f"{url}/rename/", {}, format="json").status_code == 400
    assert admin_client.post(f"{url}/stop/", {"timeout": -1}, format="json").status_code == 400
    assert admin_client.post(f"{url}/kill/", {"signal": "NOT A SIGNAL"}, format="json").status_code == 400
    assert admin_client.delete(f"{url}/?force=maybe").status_code == 400
    # Pausing a stopped container is refused by the engine: a clear 409, not a 500.
    admin_client.post(f"{url}/stop/", {"timeout": 0}, format="json")
    response = admin_client.post(f"{url}/pause/")
    assert response.status_code == 409 and response.data["detail"]


def test_a_vanished_container_and_an_offline_host_give_clear_errors(admin_client, make_host, alpha, run_container, sync_container, unique):
    host = make_host(alpha)
    name = f"ghost-{unique}"
    row = sync_container(host, run_container(alpha, name, *LOOP))
    alpha.docker("rm", "-f", name)
    response = admin_client.post(f"/api/v1/containers/{row.key}/restart/")
    assert response.status_code == 404 and "no longer exists" in response.data["detail"]
    assert Container.objects.get(pk=row.key).removed_at is not None

    offline = DockerHost.objects.create(name=f"off-{unique}", url="tcp://127.0.0.1:1")
    ghost = Container.objects.create(host=offline, short_id="abcdefabcdef", container_id="abcdefabcdef" + "0" * 52, name="x", state="running")
    response = admin_client.post(f"/api/v1/containers/{ghost.key}/stop/")
    assert response.status_code == 503 and "unreachable" in response.data["detail"]


def test_operations_need_the_operate_right(django_user_model, make_host, alpha, run_container, sync_container, unique):
    host = make_host(alpha)
    row = sync_container(host, run_container(alpha, f"perm-{unique}", *LOOP))
    viewer = django_user_model.objects.create_user(f"v{unique}", password="pw-viewer-12")
    operator = django_user_model.objects.create_user(f"o{unique}", password="pw-operator-1")
    outsider = django_user_model.objects.create_user(f"x{unique}", password="pw-outsider-1")
    assign_perm("containers.view_dockerhost", viewer, host)
    assign_perm("containers.view_container", operator, row)
    assign_perm("containers.operate_container", operator, row)

    def client(user):
        c = APIClient()
        c.force_authenticate(user)
        return c

    url = f"/api/v1/containers/{row.key}"
    assert client(outsider).post(f"{url}/pause/").status_code == 404
    assert client(outsider).get(f"{url}/logs/").status_code == 404
    assert client(viewer).post(f"{url}/pause/").status_code == 403
    assert client(viewer).get(f"{url}/logs/").status_code == 403
    assert client(viewer).delete(f"{url}/?force=true").status_code == 403
    assert _engine_state(alpha, row.name) == "running"
    assert client(operator).post(f"{url}/pause/").status_code == 200
    assert client(operator).post(f"{url}/unpause/").status_code == 200
    assert client(operator).get(f"{url}/logs/").status_code == 200


@pytest.mark.django_db(transaction=True)  # bulk runs items in worker threads with their own connections
def test_bulk_reports_each_item_and_hides_what_the_user_may_not_see(django_user_model, make_host, alpha, run_container, sync_container, unique):
    host = make_host(alpha)
    mine = [sync_container(host, run_container(alpha, f"b{i}-{unique}", *LOOP)) for i in range(3)]
    other_host = make_host(alpha)
    hidden = sync_container(other_host, run_container(alpha, f"hidden-{unique}", *LOOP))
    user = django_user_model.objects.create_user(f"bulk{unique}", password="pw-bulk-12345")
    assign_perm("containers.view_dockerhost", user, host)
    assign_perm("containers.operate_dockerhost", user, host)
    client = APIClient()
    client.force_authenticate(user)
    keys = [c.key for c in mine] + [hidden.key, f"{host.pk}:000000000000"]
    response = client.post("/api/v1/containers/bulk/", {"action": "stop", "keys": keys, "timeout": 1}, format="json")
    assert response.status_code == 200
    results = {r["key"]: r for r in response.data["results"]}
    assert all(results[c.key]["ok"] and results[c.key]["state"] == "exited" for c in mine)
    assert results[hidden.key] == {"key": hidden.key, "ok": False, "state": "", "error": "Not found.", "status": 404, "done": True}
    assert results[f"{host.pk}:000000000000"]["status"] == 404
    assert _engine_state(alpha, hidden.name) == "running"
    assert client.post("/api/v1/containers/bulk/", {"action": "explode", "keys": keys}, format="json").status_code == 400
    assert client.post("/api/v1/containers/bulk/", {"action": "stop", "keys": []}, format="json").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_admin_actions_operate_real_containers(admin, make_host, alpha, run_container, sync_container, unique):
    from django.test import Client

    host = make_host(alpha)
    row = sync_container(host, run_container(alpha, f"adm-{unique}", *LOOP))
    client = Client()
    client.force_login(admin)
    response = client.post("/admin/containers/container/", {"action": "op_stop", "_selected_action": [row.key]}, follow=True)
    notes = [str(m) for m in response.context["messages"]]
    assert "stop: 1 container(s) done." in notes, notes
    assert _engine_state(alpha, row.name) == "exited"


@pytest.mark.django_db(transaction=True)  # the bulk remove runs in worker threads with their own connections
def test_remove_with_volumes_deletes_the_anonymous_volume_and_without_keeps_it(admin_client, make_host, alpha, run_container, sync_container, unique):
    host = make_host(alpha)

    def with_volume(name):
        cid = run_container(alpha, name, *LOOP, extra=("-v", "/data"))
        volume = next(m["Name"] for m in json.loads(alpha.docker("inspect", cid).stdout)[0]["Mounts"] if m["Destination"] == "/data")
        return sync_container(host, cid), volume

    def volume_exists(volume):
        return alpha.docker("volume", "inspect", volume, check=False).returncode == 0

    dropped, dropped_volume = with_volume(f"vol-rm-{unique}")
    kept, kept_volume = with_volume(f"vol-keep-{unique}")
    bulk_row, bulk_volume = with_volume(f"vol-bulk-{unique}")
    try:
        assert volume_exists(dropped_volume) and volume_exists(kept_volume) and volume_exists(bulk_volume)
        assert admin_client.delete(f"/api/v1/containers/{dropped.key}/?force=true&volumes=true").status_code == 204
        assert admin_client.delete(f"/api/v1/containers/{kept.key}/?force=true").status_code == 204
        assert alpha.docker("inspect", dropped.container_id, check=False).returncode != 0
        assert not volume_exists(dropped_volume)  # the anonymous volume went with its container
        assert volume_exists(kept_volume)  # without volumes=true it stays
        response = admin_client.post("/api/v1/containers/bulk/", {"action": "remove", "keys": [bulk_row.key], "force": True, "volumes": True},
                                     format="json")
        assert response.status_code == 200 and response.data["results"][0]["ok"], response.data
        assert not volume_exists(bulk_volume)
        event = Event.objects.filter(type="container.operation", container_key=dropped.key, data__action="remove").get()
        assert event.data["volumes"] is True and event.data["force"] is True
    finally:
        alpha.docker("volume", "rm", "-f", dropped_volume, kept_volume, bulk_volume, check=False)
