"""/metrics values for containers whose state is known: restarts, health, update available,
memory, and DockMon's own task and event counters (parsed with prometheus-client's parser)."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounts.models import APIToken
from containers import bus, stats, tasks
from containers.choices import EventCategory, HostStatus
from dockmon_site import counters
from testkit import testing

pytestmark = pytest.mark.django_db

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']
MIB = 1024 * 1024


def _scrape(token: str) -> dict:
    response = APIClient().get("/metrics", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def _by_key(family) -> dict:
    return {sample.labels["key"]: sample.value for sample in family.samples}


def _inspect(engine, name) -> dict:
    return json.loads(engine.docker("inspect", name).stdout)[0]


def test_metrics_carry_the_known_values_of_each_container(django_user_model, admin, make_host, alpha, run_container, sync_container, unique):
    from updates.models import ContainerUpdate

    host = make_host(alpha, status=HostStatus.ONLINE)
    healthy_name, sick_name, flappy_name, hog_name = (f"{n}-{unique}" for n in ("mhealthy", "msick", "mflappy", "mhog"))
    run_container(alpha, healthy_name, *LOOP, extra=("--health-cmd", "true", "--health-interval", "1s"))
    run_container(alpha, sick_name, *LOOP, extra=("--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1"))
    # Exits at once, is restarted twice by the engine, then stays exited: RestartCount 2.
    run_container(alpha, flappy_name, "sh", "-c", "exit 3", extra=("--restart", "on-failure:2"))
    run_container(alpha, hog_name, "sh", "-c", 'dd if=/dev/zero of=/m/fill bs=1048576 count=64 2>/dev/null; trap "exit 0" TERM; while true; do sleep 1; done',
                  extra=("--tmpfs", "/m:size=128m"))
    testing.wait_for(lambda: _inspect(alpha, healthy_name)["State"]["Health"]["Status"] == "healthy", timeout=60, message="healthy")
    testing.wait_for(lambda: _inspect(alpha, sick_name)["State"]["Health"]["Status"] == "unhealthy", timeout=60, message="unhealthy")
    testing.wait_for(lambda: (lambda d: d["RestartCount"] == 2 and d["State"]["Status"] == "exited")(_inspect(alpha, flappy_name)),
                     timeout=60, message="two restarts, then exited")
    testing.wait_for(lambda: alpha.docker("exec", hog_name, "ls", "/m/fill", check=False).returncode == 0, message="the memory fill")
    rows = {name: sync_container(host, _inspect(alpha, name)["Id"]) for name in (healthy_name, sick_name, flappy_name, hog_name)}
    healthy, sick, flappy, hog = (rows[n] for n in (healthy_name, sick_name, flappy_name, hog_name))
    assert (healthy.health, sick.health, flappy.restart_count) == ("healthy", "unhealthy", 2)
    ContainerUpdate.objects.create(container=healthy, image=healthy.image, update_available=True)
    ContainerUpdate.objects.create(container=sick, image=sick.image, update_available=False)
    assert stats.collect_host(host.pk)["containers"] >= 3
    _, latest = stats.latest(host.pk)

    event_type = f"test.metrics-{unique}"
    for _ in range(3):
        bus.emit(event_type, category=EventCategory.SYSTEM, persist=False)
    task_field = "containers.tasks.prune_stats|SUCCESS"
    tasks_before = counters.read(counters.TASKS_KEY).get(task_field, 0)
    assert tasks.prune_stats.apply().successful()

    _, token = APIToken.issue(admin)
    families = _scrape(token)
    assert _by_key(families["dockmon_container_restarts"])[flappy.key] == 2.0
    assert _by_key(families["dockmon_container_restarts"])[healthy.key] == 0.0
    health = _by_key(families["dockmon_container_healthy"])
    assert (health[healthy.key], health[sick.key], health[hog.key]) == (1.0, 0.0, -1.0)  # -1: no healthcheck
    update = _by_key(families["dockmon_container_update_available"])
    assert (update[healthy.key], update[sick.key], update[hog.key]) == (1.0, 0.0, 0.0)
    running = _by_key(families["dockmon_container_running"])
    assert (running[hog.key], running[flappy.key]) == (1.0, 0.0)
    states = {(s.labels["key"], s.labels["state"]) for s in families["dockmon_container_state"].samples}
    assert (flappy.key, "exited") in states and (hog.key, "running") in states
    memory = _by_key(families["dockmon_container_memory_bytes"])
    assert memory[hog.key] == latest[hog.short_id][stats.MEM]
    assert abs(memory[hog.key] - 64 * MIB) <= 0.05 * 64 * MIB, memory[hog.key]
    assert _by_key(families["dockmon_container_memory_limit_bytes"])[hog.key] > memory[hog.key]
    assert flappy.key not in memory  # a stopped container has no stats sample
    assert {s.labels["host"]: s.value for s in families["dockmon_host_up"].samples}[str(host.pk)] == 1.0
    events = {s.labels["type"]: s.value for s in families["dockmon_events"].samples}
    assert events[event_type] == 3.0
    task_samples = {(s.labels["task"], s.labels["state"]): s.value for s in families["dockmon_tasks"].samples}
    # Other test runs share this Redis and add to the same counters: ours added at least one.
    assert task_samples[("containers.tasks.prune_stats", "SUCCESS")] >= tasks_before + 1

    # A user who may see one container gets that container only, and no DockMon-wide counters.
    viewer = django_user_model.objects.create_user(f"mv{unique}", password="pw-viewer-123")
    from guardian.shortcuts import assign_perm

    assign_perm("containers.view_container", viewer, hog)
    _, viewer_token = APIToken.issue(viewer)
    limited = _scrape(viewer_token)
    assert set(_by_key(limited["dockmon_container_running"])) == {hog.key}
    assert set(_by_key(limited["dockmon_container_memory_bytes"])) == {hog.key}
    assert "dockmon_tasks" not in limited and "dockmon_events" not in limited
    assert "dockmon_host_up" not in limited or not list(limited["dockmon_host_up"].samples)
