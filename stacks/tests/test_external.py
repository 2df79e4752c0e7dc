"""Compose projects started outside DockMon: listed as external stacks, adopted, then deployed."""

from __future__ import annotations

import pytest

from stacks.models import Stack
from stacks.tests.conftest import run_compose
from stacks.tests.test_deploy import engine_containers, two_services
from testkit import testing


@pytest.mark.django_db(transaction=True)
def test_a_project_started_on_the_engine_appears_as_external_is_adopted_and_redeployed_without_recreating(
        people, eager, testbed, alpha, make_host, unique, compose_projects, monitor, tmp_path):
    """GIVEN the monitor watching a host
    WHEN `docker compose -p ext up -d` runs straight on the engine
    THEN an external stack appears within seconds with its services and where its file is; after
    adopting it, its text is that file, the diff is empty, and a deploy recreates nothing."""
    host = make_host(alpha)
    monitor()
    testing.wait_for(lambda: Stack.objects.filter(host=host).count() == 0 and host.__class__.objects.get(pk=host.pk).status == "online",
                     timeout=30, message="monitor watching the host")
    name = f"ext{unique}"
    compose_projects.append((alpha, name))
    text = two_services(testbed.seed_image)
    (tmp_path / "compose.yaml").write_text(text)
    (tmp_path / ".env").write_text("UNUSED=1\n")
    result = run_compose(alpha, name, "up", "-d", folder=str(tmp_path))
    assert result.returncode == 0, result.stderr
    before = engine_containers(alpha, name)

    testing.wait_for(lambda: Stack.objects.filter(host=host, name=name, source="external").exists(), timeout=15,
                     message="external stack from the engine's events")
    client = people.client("admin")
    stack_id = Stack.objects.get(host=host, name=name).pk
    testing.wait_for(lambda: client.get(f"/api/v1/stacks/{stack_id}/").json()["status"] == "running", timeout=15,
                     message="both services recorded running")
    stack = client.get(f"/api/v1/stacks/{stack_id}/").json()
    assert stack["source"] == "external" and stack["compose"] == ""
    assert {s["name"]: s["state"] for s in stack["services"]} == {"db": "running", "web": "running"}
    assert stack["origin"]["working_dir"] == str(tmp_path)
    assert stack["origin"]["config_files"] == [str(tmp_path / "compose.yaml")]
    listed = client.get("/api/v1/stacks/", {"host": str(host.pk)}).json()["results"]
    # (Other projects on the shared engine may be listed too.)
    assert (name, "external") in [(s["name"], s["source"]) for s in listed]

    # Nothing runs compose on an external stack but adopt; its text cannot be edited yet.
    assert client.post(f"/api/v1/stacks/{stack_id}/deploy/").status_code == 400
    assert client.patch(f"/api/v1/stacks/{stack_id}/", {"env": "A=1"}, format="json").status_code == 400
    # Its name is taken for new DockMon stacks.
    response = client.post("/api/v1/stacks/", {"name": name, "host": str(host.pk), "compose": text}, format="json")
    assert response.status_code == 400 and "outside DockMon" in response.json()["name"][0]

    response = client.post(f"/api/v1/stacks/{stack_id}/adopt/")
    assert response.status_code == 202, response.content
    run = client.get(f"/api/v1/stack-runs/{response.json()['run']}/").json()
    assert run["status"] == "succeeded", run["log"] + run["error"]
    stack = client.get(f"/api/v1/stacks/{stack_id}/").json()
    assert stack["source"] == "dockmon"
    assert stack["compose"] == text and stack["env"] == "UNUSED=1\n"
    assert stack["status"] == "running", stack
    assert {row["service"]: row["change"] for row in client.get(f"/api/v1/stacks/{stack_id}/diff/").json()} == {
        "db": "unchanged", "web": "unchanged"}

    response = client.post(f"/api/v1/stacks/{stack_id}/deploy/")
    assert response.status_code == 202
    run = client.get(f"/api/v1/stack-runs/{response.json()['run']}/").json()
    assert run["status"] == "succeeded", run["log"] + run["error"]
    assert run["diff"] == []
    assert engine_containers(alpha, name) == before, "a deploy of the adopted, unchanged file recreated containers"

    # Down removes the project: the stack stays (DockMon's now), stopped.
    response = client.post(f"/api/v1/stacks/{stack_id}/down/", {"volumes": True}, format="json")
    assert client.get(f"/api/v1/stack-runs/{response.json()['run']}/").json()["status"] == "succeeded"
    testing.wait_for(lambda: client.get(f"/api/v1/stacks/{stack_id}/").json()["status"] == "stopped", timeout=15,
                     message="stopped after down")
    assert Stack.objects.filter(pk=stack_id, source="dockmon").exists()


@pytest.mark.django_db
def test_an_external_project_whose_file_is_gone_is_adopted_from_its_running_containers(
        people, eager, testbed, alpha, make_host, unique, compose_projects, sync_container, tmp_path):
    """GIVEN a project started outside DockMon whose compose file is no longer there
    WHEN it is adopted THEN its file is rebuilt from the containers (headed by a review note,
    the run log saying where the file was looked for), and it deploys."""
    host = make_host(alpha)
    name = f"gone{unique}"
    compose_projects.append((alpha, name))
    (tmp_path / "compose.yaml").write_text(two_services(testbed.seed_image))
    assert run_compose(alpha, name, "up", "-d", folder=str(tmp_path)).returncode == 0
    for cid in engine_containers(alpha, name).values():
        sync_container(host, cid)
    (tmp_path / "compose.yaml").unlink()
    stack = Stack.objects.get(host=host, name=name, source="external")
    client = people.client("admin")
    response = client.post(f"/api/v1/stacks/{stack.pk}/adopt/")
    assert response.status_code == 202
    run = client.get(f"/api/v1/stack-runs/{response.json()['run']}/").json()
    assert run["status"] == "succeeded", run["log"] + run["error"]
    assert str(tmp_path / "compose.yaml") in run["log"]
    detail = client.get(f"/api/v1/stacks/{stack.pk}/").json()
    assert detail["source"] == "dockmon"
    text = detail["compose"]
    assert text.startswith("# Rebuilt by DockMon from the running containers")
    # What compose makes of the rebuilt file (the database keeps only images and dependencies).
    from stacks import compose

    compose.write_files(tmp_path / "rendered", text, "")
    config = compose.config(tmp_path / "rendered", name).config
    web, db = config["services"]["web"], config["services"]["db"]
    assert web["image"] == db["image"] == testbed.seed_image
    assert db["command"] == ["sleep", "3600"] and web["command"] == ["sleep", "3600"]
    assert web["network_mode"] == db["network_mode"] == "none"
    assert db["healthcheck"]["test"] == ["CMD", "true"]
    assert web["stop_signal"] == "SIGKILL"
    assert [(v["type"], v["source"], v["target"]) for v in web["volumes"]] == [("volume", "data", "/data")]
    assert config["volumes"]["data"]["name"] == f"{name}_data"

    response = client.post(f"/api/v1/stacks/{stack.pk}/deploy/")
    run = client.get(f"/api/v1/stack-runs/{response.json()['run']}/").json()
    assert run["status"] == "succeeded", run["log"] + run["error"]
    assert set(engine_containers(alpha, name)) == {"db", "web"}
    assert client.get(f"/api/v1/stacks/{stack.pk}/").json()["status"] == "running"
