"""The monitor, daphne and WebSocket clients against real engines, end to end.

Every test runs `manage.py monitor` and daphne as real processes on the test database, changes
containers with the docker CLI, and checks what the database and a WebSocket client see.
"""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from accounts.models import APIToken
from containers.models import Container, ContainerTag, DockerHost, Event, Tag
from testkit.testing import WSClient, wait_for

pytestmark = pytest.mark.slow


def _ws(daphne, user, **query) -> WSClient:
    _, raw = APIToken.issue(user, name="ws")
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    client = WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={raw}{extra}")
    client.wait_for(lambda m: m["type"] == "hello", timeout=5)
    return client


def _online(host_id, timeout=15):
    return wait_for(lambda: DockerHost.objects.get(pk=host_id).status == "online", timeout, message="host online")


def _row(host, name):
    return Container.objects.filter(host=host, name=name, removed_at__isnull=True).first()


def test_cli_changes_reach_the_database_and_websocket_without_polling(admin, make_host, alpha, monitor, daphne, run_container, unique):
    host = make_host(alpha)
    monitor(DOCKMON_RECONCILE_SECONDS=3600)  # a long reconcile period: only events can explain what follows
    _online(host.pk)
    ws = _ws(daphne, admin)
    name = f"live-{unique}"

    cid = run_container(alpha, name, "sleep", "3600")
    key = f"{host.pk}:{cid[:12]}"
    created = ws.wait_for(lambda m: m["type"] == "container.created" and m["data"]["key"] == key)
    assert created["data"]["name"] == name and created["ts"].endswith("Z")
    # `docker run` creates and starts at once: the created message may already say running.
    running = ws.wait_for(lambda m: m["type"] in ("container.created", "container.state") and m["data"]["key"] == key and m["data"]["state"] == "running")
    assert {"key", "state", "status", "health"} <= set(running["data"])
    assert Container.objects.get(pk=key).state == "running"

    alpha.docker("stop", "-t", "0", name)
    ws.wait_for(lambda m: m["type"] == "container.state" and m["data"]["key"] == key and m["data"]["state"] == "exited")
    row = Container.objects.get(pk=key)
    assert row.state == "exited" and row.exit_code == 137 and row.status.startswith("Exited (137)")

    alpha.docker("rename", name, f"{name}-renamed")
    ws.wait_for(lambda m: m["type"] == "container.renamed" and m["data"]["key"] == key)
    assert Container.objects.get(pk=key).name == f"{name}-renamed"

    alpha.docker("rm", f"{name}-renamed")
    ws.wait_for(lambda m: m["type"] == "container.removed" and m["data"]["key"] == key)
    row = Container.objects.get(pk=key)
    assert row.removed_at is not None and row.state == "removed"
    # Every change is in the event log too.
    types = set(Event.objects.filter(container_key=key).values_list("type", flat=True))
    assert {"container.created", "container.state", "container.renamed", "container.removed"} <= types
    ws.close()


def test_a_container_created_while_the_monitor_was_down_appears_after_restart(make_host, alpha, monitor, run_container, unique):
    host = make_host(alpha)
    doomed = f"doomed-{unique}"
    run_container(alpha, doomed)
    first = monitor()
    _online(host.pk)
    wait_for(lambda: _row(host, doomed), message="initial sync")
    assert first.stop() == 0  # SIGTERM: a clean exit

    name = f"gap-{unique}"
    cid = run_container(alpha, name)
    alpha.docker("rm", "-f", doomed)
    monitor()
    row = wait_for(lambda: _row(host, name), message="container created during the gap")
    assert row.key == f"{host.pk}:{cid[:12]}" and row.state == "running" and row.started_at is not None
    wait_for(lambda: Container.objects.get(host=host, name=doomed).removed_at is not None, message="removal during the gap")


def test_killing_the_engine_marks_the_host_offline_and_recovery_reconciles(make_host, alpha, monitor, run_container, unique, daphne, admin):
    host = make_host(alpha)
    name = f"survivor-{unique}"
    cid = run_container(alpha, name)
    monitor()
    _online(host.pk)
    wait_for(lambda: _row(host, name) and _row(host, name).state == "running", message="running before the crash")
    ws = _ws(daphne, admin)
    try:
        alpha.kill()
        ws.wait_for(lambda m: m["type"] == "host.status" and m["data"]["host"] == str(host.pk) and m["data"]["status"] == "offline", timeout=20)
        host.refresh_from_db()
        assert host.status == "offline" and host.last_error
    finally:
        alpha.start()
    ws.wait_for(lambda m: m["type"] == "host.status" and m["data"]["host"] == str(host.pk) and m["data"]["status"] == "online", timeout=30)
    # The engine came back without the container running (its process died with the engine):
    # the reconcile on reconnect must say so.
    state = alpha.docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip()
    wait_for(lambda: Container.objects.get(pk=f"{host.pk}:{cid[:12]}").state == state, timeout=15, message=f"state {state} reconciled")
    assert Event.objects.filter(type="host.status", host=host, data__status="offline").exists()
    ws.close()


def test_a_container_recreated_with_the_same_name_gets_its_settings_back(make_host, alpha, monitor, run_container, unique, daphne, admin):
    host = make_host(alpha)
    name = f"phoenix-{unique}"
    old_id = run_container(alpha, name)
    monitor()
    _online(host.pk)
    old = wait_for(lambda: _row(host, name), message="first incarnation")
    tag, _ = Tag.objects.get_or_create(name=f"prod-{unique}")
    ContainerTag.objects.create(container=old, tag=tag)
    ws = _ws(daphne, admin)

    alpha.docker("rm", "-f", name)
    new_id = run_container(alpha, name)
    new_key = f"{host.pk}:{new_id[:12]}"
    message = ws.wait_for(lambda m: m["type"] == "container.recreated" and m["data"]["new_key"] == new_key)
    assert message["data"]["old_key"] == f"{host.pk}:{old_id[:12]}"
    new = Container.objects.get(pk=new_key)
    assert list(new.tags.values_list("name", flat=True)) == [tag.name]
    assert not ContainerTag.objects.filter(container=old).exists()
    assert Container.objects.get(pk=old.pk).replaced_by == new_key
    ws.close()


def test_websocket_clients_only_get_what_they_may_see_and_can_filter_by_host(
    django_user_model, make_host, alpha, beta, monitor, run_container, unique, daphne, admin
):
    host_a = make_host(alpha)
    host_b = make_host(beta)
    granted = django_user_model.objects.create_user(f"g{unique}", password="pw-granted-1")
    outsider = django_user_model.objects.create_user(f"o{unique}", password="pw-outsider-1")
    assign_perm("containers.view_dockerhost", granted, host_a)
    assign_perm("containers.view_dockerhost", outsider, host_b)
    monitor()
    _online(host_a.pk)
    _online(host_b.pk)
    ws_granted = _ws(daphne, granted)
    ws_outsider = _ws(daphne, outsider)
    ws_admin_b = _ws(daphne, admin, host=str(host_b.pk))

    cid = run_container(alpha, f"secret-{unique}")
    key = f"{host_a.pk}:{cid[:12]}"
    ws_granted.wait_for(lambda m: m["type"] == "container.created" and m["data"]["key"] == key)
    beta_id = run_container(beta, f"public-{unique}")
    beta_key = f"{host_b.pk}:{beta_id[:12]}"
    ws_outsider.wait_for(lambda m: m["type"] == "container.created" and m["data"]["key"] == beta_key)
    ws_admin_b.wait_for(lambda m: m["type"] == "container.created" and m["data"]["key"] == beta_key)
    # Give any stray message time to arrive, then check nothing leaked.
    ws_outsider.drain(1.0)
    ws_admin_b.drain(0.2)
    assert not [m for m in ws_outsider.messages if m["data"].get("host") == str(host_a.pk)]
    assert not [m for m in ws_admin_b.messages if m["data"].get("host") == str(host_a.pk)]
    for ws in (ws_granted, ws_outsider, ws_admin_b):
        ws.close()


def test_anonymous_websocket_is_closed(daphne):
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    with pytest.raises((InvalidStatus, ConnectionClosed)):
        client = WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/")
        client.recv(timeout=5)
        client.recv(timeout=5)


def test_a_websocket_from_a_foreign_origin_is_refused(daphne, admin):
    from websockets.exceptions import InvalidStatus

    _, raw = APIToken.issue(admin)
    with pytest.raises(InvalidStatus):
        WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={raw}", headers={"Origin": "http://evil.example"})


def test_hosts_added_and_removed_while_the_monitor_runs_are_picked_up(admin_client, alpha, monitor, run_container, unique):
    name = f"late-{unique}"
    run_container(alpha, name)
    process = monitor()
    wait_for(lambda: "monitor started" in process.log(), message="monitor up")
    created = admin_client.post("/api/v1/hosts/", {"name": f"late-{unique}", "url": alpha.unix_url}, format="json").data
    host = DockerHost.objects.get(pk=created["id"])
    wait_for(lambda: _row(host, name), message="containers of a host added at run time")
    assert admin_client.delete(f"/api/v1/hosts/{host.pk}/").status_code == 204
    # The watcher for a deleted host stops; the monitor keeps running without errors.
    wait_for(lambda: "Traceback" not in process.log() and process.alive(), timeout=2)
    second = f"after-{unique}"
    run_container(alpha, second)
    host_b = DockerHost.objects.create(name=f"again-{unique}", url=alpha.unix_url)
    wait_for(lambda: _row(host_b, second), message="a second host added later")
    assert process.alive() and "Traceback" not in process.log()
