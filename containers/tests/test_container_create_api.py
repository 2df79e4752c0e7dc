"""Containers made from DockMon over the API, on a real engine with the real registry: the image
pulled when missing, every setting visible in the engine's inspect, refusals for bad input, a
name in use and a missing image, and only `deploy` on the host allows it."""

from __future__ import annotations

import json

import pytest
from guardian.shortcuts import assign_perm

from containers.models import Container, Event
from testkit.testing import free_port

pytestmark = pytest.mark.django_db

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


def test_a_container_is_created_with_every_setting_after_pulling_its_image(people, testbed, alpha, make_host, eager, tmp_path,
                                                                           containers_to_remove, unique):
    ref = testbed.image_ref(f"t/create-{unique}", "1")
    image_id = testbed.build_image("alpha", ref, "create")
    testbed.push("alpha", ref)
    alpha.docker("rmi", ref)  # only the registry has it now: creating pulls it
    network, volume, name = f"create-net-{unique}", f"create-vol-{unique}", f"create-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("network", "create", "--internal", "--subnet", "198.19.253.0/24", network)
    host = make_host(alpha)
    port = free_port()
    body = {
        "host": str(host.pk), "name": name, "image": ref, "command": LOOP, "env": {"COLOR": "blue"},
        "ports": {"8080/tcp": f"127.0.0.1:{port}"}, "volumes": {volume: "/data", str(tmp_path): "/config:ro"},
        "networks": {network: {"aliases": ["web"]}}, "restart_policy": "on-failure:3", "labels": {"t": unique}, "start": True,
    }
    try:
        assign_perm("containers.view_dockerhost", people.granted, host)
        assign_perm("containers.operate_dockerhost", people.granted, host)
        assert people.client("outsider").post("/api/v1/containers/", body, format="json").status_code == 404
        assert people.client("granted").post("/api/v1/containers/", body, format="json").status_code == 403
        assign_perm("containers.deploy_dockerhost", people.granted, host)
        client = people.client("granted")

        created = client.post("/api/v1/containers/", body, format="json")
        assert created.status_code == 201, created.content
        key = created.json()["key"]
        data = json.loads(alpha.docker("inspect", name).stdout)[0]
        assert key == f"{host.pk}:{data['Id'][:12]}" and data["State"]["Running"] is True
        assert data["Image"] == image_id and "COLOR=blue" in data["Config"]["Env"] and data["Config"]["Labels"]["t"] == unique
        assert data["Config"]["Cmd"] == LOOP
        assert data["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        assert data["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        mounts = {m["Destination"]: m for m in data["Mounts"]}
        assert mounts["/data"]["Name"] == volume and mounts["/config"]["Source"] == str(tmp_path) and mounts["/config"]["RW"] is False
        assert "web" in data["NetworkSettings"]["Networks"][network]["Aliases"]
        assert Container.objects.get(pk=key).state == "running"
        assert Event.objects.filter(type="container.deployed", host=host, actor=people.granted).exists()

        taken = client.post("/api/v1/containers/", body, format="json")
        assert taken.status_code == 400 and "name" in taken.json()
        missing = client.post("/api/v1/containers/", {**body, "name": f"{name}-2", "image": testbed.image_ref(f"t/none-{unique}", "1")},
                              format="json")
        assert missing.status_code == 404 and "manifest unknown" in missing.json()["detail"].lower()
        bad = client.post("/api/v1/containers/", {**body, "name": f"{name}-3", "ports": {"8080": 1}, "restart_policy": "sometimes"},
                          format="json")
        assert bad.status_code == 400 and {"ports", "restart_policy"} <= set(bad.json())
        assert alpha.docker("inspect", f"{name}-2", check=False).returncode != 0
    finally:
        alpha.docker("rm", "-f", name, check=False)
        alpha.docker("network", "rm", network, check=False)
        alpha.docker("volume", "rm", "-f", volume, check=False)
        alpha.docker("rmi", "-f", image_id, check=False)


def test_a_duplicate_keeps_every_setting_and_applies_the_changes(people, alpha, make_host, run_container, sync_container,
                                                                 containers_to_remove, unique):
    network, volume, name, copy = f"dup-net-{unique}", f"dup-vol-{unique}", f"dup-{unique}", f"dup-copy-{unique}"
    containers_to_remove.append((alpha, copy))
    alpha.docker("network", "create", "--internal", "--subnet", "198.19.254.0/24", network)
    host = make_host(alpha)
    try:
        cid = run_container(alpha, name, *LOOP, network=network, extra=(
            "--network-alias", "web", "-v", f"{volume}:/data", "-e", "COLOR=blue", "-e", "OLD=x", "--label", f"t={unique}",
            "--restart", "on-failure:2"))
        source = sync_container(host, cid)
        url = f"/api/v1/containers/{source.key}/duplicate/"
        body = {"name": copy, "changes": {"env": {"COLOR": "green", "OLD": None}, "labels": {"copy": "yes"}}}
        assert people.client("outsider").post(url, body, format="json").status_code == 404
        assign_perm("containers.view_dockerhost", people.granted, host)
        assign_perm("containers.operate_dockerhost", people.granted, host)
        assert people.client("granted").post(url, body, format="json").status_code == 403
        assign_perm("containers.deploy_dockerhost", people.granted, host)

        made = people.client("granted").post(url, body, format="json")
        assert made.status_code == 201, made.content
        data = json.loads(alpha.docker("inspect", copy).stdout)[0]
        assert made.json()["key"] == f"{host.pk}:{data['Id'][:12]}" and data["State"]["Running"] is True
        env = data["Config"]["Env"]
        assert "COLOR=green" in env and not any(e.startswith("OLD=") for e in env)
        assert data["Config"]["Labels"]["t"] == unique and data["Config"]["Labels"]["copy"] == "yes"
        assert data["Config"]["Cmd"] == LOOP
        assert data["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        assert [m["Name"] for m in data["Mounts"] if m["Destination"] == "/data"] == [volume]
        assert "web" in data["NetworkSettings"]["Networks"][network]["Aliases"]
        # The source is untouched.
        assert "COLOR=blue" in json.loads(alpha.docker("inspect", name).stdout)[0]["Config"]["Env"]
        assert people.client("granted").post(url, body, format="json").status_code == 400  # the name is taken now
    finally:
        alpha.docker("rm", "-f", copy, check=False)
        alpha.docker("rm", "-f", name, check=False)
        alpha.docker("network", "rm", network, check=False)
        alpha.docker("volume", "rm", "-f", volume, check=False)


def test_a_container_that_cannot_start_is_removed_again(people, alpha, make_host, containers_to_remove, unique):
    """GIVEN a command the image does not have WHEN a container is created with it THEN the
    start fails, the answer says so in the engine's words, and no container is left behind.
    (A host port already taken cannot be shown here: test networks are internal, and internal
    networks publish no ports.)"""
    name = f"nostart-{unique}"
    containers_to_remove.append((alpha, name))
    host = make_host(alpha)
    body = {"host": str(host.pk), "name": name, "image": "dockmon/busybox:latest", "command": ["/no/such/program"],
            "networks": ["none"]}
    response = people.client("admin").post("/api/v1/containers/", body, format="json")
    assert response.status_code == 409, response.content
    detail = response.json()["detail"]
    assert "could not start" in detail and "/no/such/program" in detail and "removed again" in detail
    assert alpha.docker("inspect", name, check=False).returncode != 0
