"""Updating a stack as a whole on a real engine with real releases pushed to the local registry."""

from __future__ import annotations

import pytest

from stacks.tests.test_deploy import deploy, engine_containers, inspect

pytestmark = pytest.mark.django_db

LOOP = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


def stack_file(ref: str, seed: str) -> str:
    # web runs its image's own command (a release decides whether it keeps running).
    return f"""services:
  web:
    image: {ref}
    network_mode: none
    stop_signal: SIGKILL
    volumes:
      - data:/data
  db:
    image: {seed}
    command: ["sleep", "3600"]
    network_mode: none
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
volumes:
  data: {{}}
"""


def run_update(client, stack_id: int) -> dict:
    response = client.post(f"/api/v1/stacks/{stack_id}/update/")
    assert response.status_code == 202, response.content
    return client.get(f"/api/v1/stack-runs/{response.json()['run']}/").json()


def test_an_update_recreates_the_service_with_a_new_release_and_a_broken_release_is_rolled_back(
        people, eager, testbed, alpha, make_host, unique, images_to_remove, compose_projects, settings):
    """GIVEN a deployed stack whose web service runs release 1 of an image (data in its volume)
    WHEN release 2 is pushed and the stack is updated, then a release 3 whose container exits at once
    THEN the first update recreates web only, on release 2; the second rolls back: web runs
    release 2 again, the run is rolled_back naming web and why, the volume's data is intact."""
    settings.DOCKMON_UPDATE_GRACE_SECONDS = 1
    settings.DOCKMON_UPDATE_HEALTH_TIMEOUT = 30
    host = make_host(alpha)
    name = f"up{unique}"
    compose_projects.append((alpha, name))
    ref = testbed.image_ref(f"stacks/web{unique}", "1")
    for engine in (alpha, testbed.engines["beta"]):
        images_to_remove.append((engine, ref))
    testbed.build_image("alpha", ref, "one", cmd=LOOP)
    testbed.push("alpha", ref)
    client = people.client("admin")
    stack = client.post("/api/v1/stacks/", {"name": name, "host": str(host.pk), "compose": stack_file(ref, testbed.seed_image)},
                        format="json").json()
    assert deploy(client, stack["id"])["status"] == "succeeded"
    first = engine_containers(alpha, name)
    release1 = inspect(alpha, first["web"])["Image"]
    alpha.docker("exec", first["web"], "sh", "-c", "echo kept > /data/marker")

    # Nothing new yet: nothing is recreated.
    run = run_update(client, stack["id"])
    assert run["status"] == "succeeded", run["log"] + run["error"]
    assert "nothing to update" in run["log"]
    assert engine_containers(alpha, name) == first

    testbed.build_image("beta", ref, "two", cmd=LOOP)
    testbed.push("beta", ref)
    run = run_update(client, stack["id"])
    assert run["status"] == "succeeded", run["log"] + run["error"]
    assert [row["service"] for row in run["diff"]] == ["web"]
    second = engine_containers(alpha, name)
    assert second["db"] == first["db"], "a service without a new image was recreated"
    assert second["web"] != first["web"]
    release2 = inspect(alpha, second["web"])["Image"]
    assert release2 != release1
    assert "web passed its health gate" in run["log"]

    testbed.build_image("beta", ref, "three", cmd=["false"])
    testbed.push("beta", ref)
    run = run_update(client, stack["id"])
    assert run["status"] == "rolled_back", run["log"] + run["error"]
    assert run["error"].startswith("web failed: its container exited"), run["error"]
    third = engine_containers(alpha, name)
    assert third["db"] == first["db"]
    web = inspect(alpha, third["web"])
    assert web["Image"] == release2 and web["State"]["Running"], "web is not back on release 2"
    assert alpha.docker("exec", third["web"], "cat", "/data/marker").stdout.strip() == "kept"
    assert alpha.docker("exec", third["web"], "cat", "/etc/dockmon-release").stdout.strip() == "two"
    detail = client.get(f"/api/v1/stacks/{stack['id']}/").json()
    assert detail["status"] == "running", detail
    # The stack's file still describes what runs (a deploy would pull release 3 again, as compose does).
    assert {row["change"] for row in client.get(f"/api/v1/stacks/{stack['id']}/diff/").json()} == {"unchanged"}


def test_services_are_recreated_after_what_they_depend_on():
    from stacks.stack_update import dependency_order

    config = {"services": {"app": {"depends_on": {"db": {}, "cache": {}}}, "db": {}, "cache": {"depends_on": {"db": {}}},
                           "web": {"depends_on": {"app": {}}}}}
    assert dependency_order(config, ["web", "app", "db", "cache"]) == ["db", "cache", "app", "web"]
    # Only the services asked for, in an order their dependencies allow.
    assert dependency_order(config, ["web", "db"]) == ["db", "web"]


def test_stacks_that_ask_for_it_are_updated_by_the_beat_task(people, eager, testbed, alpha, make_host, unique, compose_projects):
    """GIVEN three stacks: one with auto_update set (PATCH), one whose service carries the label
    dockmon.auto_update=true, one with neither THEN the task starts an update run (no actor) for
    the first two only."""
    from stacks.models import Stack, StackRun
    from stacks.tasks import auto_update_stacks

    host = make_host(alpha)
    client = people.client("admin")
    plain = f"""services:
  app:
    image: {testbed.seed_image}
    command: ["sleep", "3600"]
    network_mode: none
    stop_signal: SIGKILL
"""
    labelled = plain + "    labels:\n      dockmon.auto_update: \"true\"\n"
    ids = {}
    for kind, text in (("setting", plain), ("label", labelled), ("none", plain)):
        name = f"au{kind}{unique}"
        compose_projects.append((alpha, name))
        ids[kind] = client.post("/api/v1/stacks/", {"name": name, "host": str(host.pk), "compose": text}, format="json").json()["id"]
        assert deploy(client, ids[kind])["status"] == "succeeded"
    response = client.patch(f"/api/v1/stacks/{ids['setting']}/", {"auto_update": True}, format="json")
    assert response.status_code == 200 and response.json()["auto_update"] is True

    assert auto_update_stacks() == 2
    runs = StackRun.objects.filter(kind="update")
    assert sorted(run.stack_id for run in runs) == sorted([ids["setting"], ids["label"]])
    for run in runs:
        assert run.status == "succeeded", run.log + run.error
        assert run.actor is None and run.options == {"trigger": "auto"}
        assert "nothing to update" in run.log
    assert not Stack.objects.get(pk=ids["none"]).runs.filter(kind="update").exists()
