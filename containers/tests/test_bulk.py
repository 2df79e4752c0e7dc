"""Bulk operations at scale: a job of about a hundred real containers run by a real Celery
worker, each item reported at /api/v1/bulk-jobs/{id}/ and live over the WebSocket to the person
who asked (only), with the items they may not operate refused one by one."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import override_settings
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.models import APIToken
from containers import operations
from containers.choices import BulkJobStatus
from containers.models import BulkJob, Container, Event
from testkit import testing

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _states(engine, names: list[str]) -> dict[str, str]:
    out = engine.docker("inspect", "-f", "{{.Name}} {{.State.Status}}", *names).stdout.split("\n")
    return dict(line.lstrip("/").split(" ", 1) for line in out if line.strip())


def _start_worker(queue: str, **env) -> testing.ManagedProcess:
    argv = [sys.executable, "-m", "celery", "-A", "dockmon_site", "worker", "-Q", queue, "-c", "1", "-l", "info",
            "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"{queue}@%h"]
    return testing.ManagedProcess("bulk-worker", argv, testing.subprocess_env(DOCKMON_BULK_QUEUE=queue, **env), testing.log_dir()).start()


def test_the_per_host_queue_never_lets_one_engine_take_more_than_its_share():
    """Pure scheduling: 8 threads over 3 hosts with room for 2 each; every key handed out once,
    never more than 2 of one host in flight, and the small hosts are not kept waiting for the big one."""
    keys = [f"{'a' * 36}:{i:012x}" for i in range(30)] + [f"{'b' * 36}:{i:012x}" for i in range(5)] + [f"{'c' * 36}:{i:012x}" for i in range(5)]
    queue = operations._PerHostQueue(keys, per_host=2)
    busy: dict[str, int] = {}
    peak: dict[str, int] = {}
    order: list[str] = []
    lock = threading.Lock()
    rng = random.Random(4)

    def work():
        while (key := queue.take()) is not None:
            host = key.split(":")[0]
            with lock:
                busy[host] = busy.get(host, 0) + 1
                peak[host] = max(peak.get(host, 0), busy[host])
                order.append(key)
            time.sleep(rng.random() / 500)
            with lock:
                busy[host] -= 1
            queue.done(key)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(order) == sorted(keys)
    assert peak == {"a" * 36: 2, "b" * 36: 2, "c" * 36: 2}
    # Hosts are taken in turn: the last of the small hosts' keys go out well before the big host's.
    last_small = max(order.index(k) for k in keys if not k.startswith("a"))
    assert last_small < len(keys) - 10


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_of_a_hundred_containers_reports_each_item_live(django_user_model, admin, make_host, alpha, containers_to_remove, daphne, unique):
    """GIVEN 100 running containers on one engine, a user who may view all of them but operate
    only 80, another host's container they cannot see and a key that names nothing
    WHEN they ask to stop all 102 at once
    THEN the API answers 202 with a job; a real worker stops exactly the 80; every item is
    reported once over the WebSocket to that user alone and at the job endpoint (80 ok, 20
    refused with 403, 2 with 404); nobody else's socket hears of it."""
    host = make_host(alpha)
    other = make_host(alpha)
    names = [f"bk{i:03d}-{unique}" for i in range(100)]
    containers_to_remove.extend((alpha, name) for name in [*names, f"bkhidden-{unique}"])

    def run(name):
        return alpha.docker("run", "-d", "--network", "none", "--name", name, "dockmon/busybox:latest", *LOOP, timeout=180).stdout.strip()

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(run, names))
    hidden_id = run(f"bkhidden-{unique}")
    from containers import engine, services
    from containers.engine import facts as engine_facts

    client = engine.client_for_host(host)
    try:
        rows = [services.apply_facts(host.pk, engine_facts.inspect_container(client, cid)) for cid in ids]
        hidden = services.apply_facts(other.pk, engine_facts.inspect_container(client, hidden_id))
    finally:
        client.close()

    user = django_user_model.objects.create_user(f"bulk{unique}", password="pw-bulk-12345")
    outsider = django_user_model.objects.create_user(f"out{unique}", password="pw-outsider-1")
    assign_perm("containers.view_dockerhost", user, host)
    assign_perm("containers.view_dockerhost", outsider, host)  # sees the containers, not the job
    operable, view_only = rows[:80], rows[80:]
    for row in operable:
        assign_perm("containers.operate_container", user, row)
    nothing = f"{host.pk}:{uuid.uuid4().hex[:12]}"
    keys = [r.key for r in rows] + [hidden.key, nothing]
    random.Random(7).shuffle(keys)

    queue = f"bulk-{unique}"
    worker = _start_worker(queue, DOCKMON_BULK_CONCURRENCY="16")
    _, user_token = APIToken.issue(user)
    _, outsider_token = APIToken.issue(outsider)
    _, admin_token = APIToken.issue(admin)
    mine = testing.WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={user_token}")
    theirs = testing.WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={outsider_token}")
    boss = testing.WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={admin_token}")
    try:
        for ws in (mine, theirs, boss):
            ws.wait_for(lambda m: m["type"] == "hello")
        with override_settings(DOCKMON_BULK_QUEUE=queue):
            response = _client(user).post("/api/v1/containers/bulk/", {"action": "stop", "keys": keys, "timeout": 5}, format="json")
        assert response.status_code == 202, response.data
        job_id = response.data["id"]
        assert response.data["total"] == 102 and response.data["background"] is True
        assert [r["key"] for r in response.data["results"]] == keys and not any(r["done"] for r in response.data["results"])

        finished = mine.wait_for(lambda m: m["type"] == "bulk.finished" and m["data"]["job"] == job_id, timeout=240)
        assert (finished["data"]["succeeded"], finished["data"]["failed"], finished["data"]["total"]) == (80, 22, 102)
        items = [m["data"] for m in mine.messages if m["type"] == "bulk.item" and m["data"]["job"] == job_id]
        assert sorted(i["key"] for i in items) == sorted(keys)  # each item once
        assert sorted(i["done"] for i in items) == list(range(1, 103))
        by_key = {i["key"]: i for i in items}
        assert all(by_key[r.key]["ok"] and by_key[r.key]["state"] == "exited" for r in operable)
        assert all(by_key[r.key]["status"] == 403 for r in view_only)
        assert by_key[hidden.key]["status"] == 404 and by_key[nothing]["status"] == 404
        assert by_key[hidden.key]["error"] == "Not found." and "host" not in by_key[hidden.key]  # nothing about the hidden host

        job = _client(user).get(f"/api/v1/bulk-jobs/{job_id}/").data
        assert job["status"] == BulkJobStatus.FINISHED and (job["done"], job["succeeded"], job["failed"]) == (102, 80, 22)
        results = {r["key"]: r for r in job["results"]}
        assert [r["key"] for r in job["results"]] == keys  # in the order asked
        assert all(results[r.key]["ok"] and results[r.key]["state"] == "exited" for r in operable)
        assert {results[r.key]["status"] for r in view_only} == {403}
        assert results[hidden.key] == {"key": hidden.key, "ok": False, "state": "", "error": "Not found.", "status": 404, "done": True}
        assert [j["id"] for j in _client(user).get("/api/v1/bulk-jobs/").data["results"]] == [job_id]
        assert _client(outsider).get(f"/api/v1/bulk-jobs/{job_id}/").status_code == 404
        assert _client(outsider).get("/api/v1/bulk-jobs/").data["results"] == []
        assert _client(admin).get(f"/api/v1/bulk-jobs/{job_id}/").status_code == 200

        states = _states(alpha, [*names, f"bkhidden-{unique}"])
        assert {states[r.name] for r in operable} == {"exited"}
        assert {states[r.name] for r in view_only} == {"running"} and states[hidden.name] == "running"
        assert set(Container.objects.filter(pk__in=[r.key for r in operable]).values_list("desired_state", flat=True)) == {"stopped"}
        assert Event.objects.filter(type="container.operation", container_key__in=[r.key for r in operable], actor=user).count() == 80
        assert Event.objects.filter(type="bulk.finished", actor=user, data__job=job_id).exists()

        # The job was for its owner only: the outsider (who sees these containers) and even a
        # superuser heard nothing of it, though they saw the containers stop.
        for ws in (theirs, boss):
            ws.drain(1.0)
            assert not [m for m in ws.messages if m["type"].startswith("bulk.")]
        assert any(m["type"] == "container.operation" for m in theirs.messages)
    finally:
        for ws in (mine, theirs, boss):
            ws.close()
        worker.stop()
    assert BulkJob.objects.get(pk=job_id).finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_jobs_progress_reaches_its_owner_alone_and_carries_no_routing_data(django_user_model, make_host, alpha, run_container,
                                                                             sync_container, daphne, unique):
    """GIVEN a user who may operate two containers and an outsider who may see them
    WHEN the user runs a background job on them
    THEN the user's browser gets each item and the end of the job, with nothing in them that
    says whom they were routed to; the outsider's browser gets none of it."""
    from dockmon_site import realtime
    from dockmon_site.celery import app

    host = make_host(alpha)
    rows = [sync_container(host, run_container(alpha, f"br{i}-{unique}", *LOOP)) for i in range(2)]
    user = django_user_model.objects.create_user(f"br{unique}", password="pw-bulk-12345")
    outsider = django_user_model.objects.create_user(f"bro{unique}", password="pw-outsider-1")
    for who in (user, outsider):
        assign_perm("containers.view_dockerhost", who, host)
    assign_perm("containers.operate_dockerhost", user, host)
    keys = [r.key for r in rows]
    mine = testing.WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={APIToken.issue(user)[1]}")
    theirs = testing.WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={APIToken.issue(outsider)[1]}")
    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    try:
        for ws in (mine, theirs):
            ws.wait_for(lambda m: m["type"] == "hello")
        app.conf.update(task_always_eager=True, task_eager_propagates=True)
        try:
            response = _client(user).post("/api/v1/containers/bulk/", {"action": "pause", "keys": keys, "background": True}, format="json")
        finally:
            app.conf.update(task_always_eager=before[0], task_eager_propagates=before[1])
        assert response.status_code == 202
        job_id = response.data["id"]
        assert realtime.flush(10)
        finished = mine.wait_for(lambda m: m["type"] == "bulk.finished" and m["data"]["job"] == job_id)
        assert (finished["data"]["succeeded"], finished["data"]["failed"]) == (2, 0)
        mine.drain(0.5)
        progress = [m for m in mine.messages if m["type"].startswith("bulk.")]
        assert sorted(m["data"]["key"] for m in progress if m["type"] == "bulk.item") == sorted(keys)
        assert set(progress[0]) == {"type", "data", "ts"}
        assert not [m for m in progress if "_user" in json.dumps(m) or "user" in m["data"]]
        assert "_user" not in Event.objects.get(type="bulk.finished", data__job=job_id).data

        theirs.drain(1.0)
        assert not [m for m in theirs.messages if m["type"].startswith("bulk.")]
        assert any(m["type"] == "container.operation" for m in theirs.messages)  # they do hear of the containers
    finally:
        for ws in (mine, theirs):
            ws.close()


@pytest.mark.django_db(transaction=True)
def test_small_selections_answer_inline_and_background_can_be_asked_for(django_user_model, make_host, alpha, run_container, sync_container, unique):
    from dockmon_site.celery import app

    host = make_host(alpha)
    rows = [sync_container(host, run_container(alpha, f"bs{i}-{unique}", *LOOP)) for i in range(3)]
    user = django_user_model.objects.create_user(f"bs{unique}", password="pw-bulk-12345")
    assign_perm("containers.view_dockerhost", user, host)
    assign_perm("containers.operate_dockerhost", user, host)
    client = _client(user)
    keys = [r.key for r in rows]

    inline = client.post("/api/v1/containers/bulk/", {"action": "pause", "keys": keys}, format="json")
    assert inline.status_code == 200 and inline.data["background"] is False and inline.data["status"] == BulkJobStatus.FINISHED
    assert [r["state"] for r in inline.data["results"]] == ["paused"] * 3 and inline.data["succeeded"] == 3

    # background=true sends even a small job to a worker; Celery runs it in this process here.
    with testing.eager_tasks(app):
        queued = client.post("/api/v1/containers/bulk/", {"action": "unpause", "keys": keys, "background": True}, format="json")
    assert queued.status_code == 202
    job = client.get(f"/api/v1/bulk-jobs/{queued.data['id']}/").data
    assert job["status"] == BulkJobStatus.FINISHED and [r["state"] for r in job["results"]] == ["running"] * 3

    # A finished job is left alone if it is handed out again (a redelivered task).
    again = operations.execute_job(queued.data["id"])
    assert again.status == BulkJobStatus.FINISHED and Event.objects.filter(type="bulk.finished", data__job=queued.data["id"]).count() == 1

    for bad in ({"action": "explode", "keys": keys}, {"action": "stop", "keys": []}, {"action": "stop", "keys": ["nope"]},
                {"action": "stop", "keys": keys, "background": "sometimes"}, {"action": "stop", "keys": keys, "timeout": -1}):
        response = client.post("/api/v1/containers/bulk/", bad, format="json")
        assert response.status_code == 400 and set(response.data) & set(bad), (bad, response.data)
    assert client.get(f"/api/v1/bulk-jobs/{uuid.uuid4()}/").status_code == 404
