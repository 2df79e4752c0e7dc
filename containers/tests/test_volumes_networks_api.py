"""Volumes and networks of a host over the API, against the real testbed engine: create, list
with their users, removal refused while in use (users named), volume prune with an exact dry
run, connecting and disconnecting a container, and who may do which (view lists, deploy changes).

Networks made here are internal bridges on a 198.18.0.0/15 subnet (nothing is ever sent over them)."""

from __future__ import annotations

import random

import pytest
from guardian.shortcuts import assign_perm

from containers.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def cleanup(alpha, containers_to_remove):
    """Names of volumes and networks removed after the test; the test's containers go first
    (this fixture ends before the containers fixture, and a volume in use cannot be removed)."""
    made = {"volume": [], "network": []}
    yield made
    for engine, name in containers_to_remove:
        engine.docker("rm", "-f", name, check=False)
    for name in made["network"]:
        alpha.docker("network", "rm", name, check=False)
    for name in made["volume"]:
        alpha.docker("volume", "rm", "-f", name, check=False)


def _grant(user, host, *actions):
    for name in actions:
        assign_perm(f"containers.{name}_dockerhost", user, host)


def _subnet() -> str:
    return f"198.19.{random.randrange(1, 254)}.0/24"


def _rows(response) -> dict:
    assert response.status_code == 200, response.content
    return {row["name"]: row for row in response.json()["results"]}


# --- volumes ---------------------------------------------------------------------------------
def test_volumes_are_created_listed_and_refused_removal_while_mounted(people, alpha, make_host, run_container, cleanup, unique):
    host = make_host(alpha)
    name = f"vol-{unique}"
    cleanup["volume"].append(name)
    body = {"host": str(host.pk), "name": name, "labels": {"t": unique}}
    assert people.client("outsider").post("/api/v1/volumes/", body, format="json").status_code == 404
    _grant(people.granted, host, "view", "operate", "change")
    assert people.client("granted").post("/api/v1/volumes/", body, format="json").status_code == 403
    assert alpha.docker("volume", "inspect", name, check=False).returncode != 0
    _grant(people.granted, host, "deploy")
    client = people.client("granted")

    created = client.post("/api/v1/volumes/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["id"] == f"{host.pk}:{name}" and created.json()["driver"] == "local"
    assert alpha.docker("volume", "inspect", "-f", "{{.Labels.t}}", name).stdout.strip() == unique
    again = client.post("/api/v1/volumes/", body, format="json")
    assert again.status_code == 400 and "name" in again.json()
    assert client.post("/api/v1/volumes/", {**body, "name": "../x"}, format="json").status_code == 400

    user = f"vol-user-{unique}"
    cid = run_container(alpha, user, extra=("-v", f"{name}:/data"))
    row = _rows(client.get("/api/v1/volumes/", {"host": str(host.pk)}))[name]
    assert row["containers"] == [f"{host.pk}:{cid[:12]}"] and row["labels"] == {"t": unique} and row["created"].endswith("Z")
    assert people.client("outsider").get("/api/v1/volumes/", {"host": str(host.pk)}).json()["count"] == 0
    assert row["size"] is None  # disk usage only when asked (a slower engine call)
    alpha.docker("exec", user, "sh", "-c", "head -c 70000 /dev/zero > /data/blob")
    sized = _rows(client.get("/api/v1/volumes/", {"host": str(host.pk), "size": "true"}))[name]
    assert sized["size"] >= 70000

    url = f"/api/v1/volumes/{host.pk}:{name}/"
    assert people.client("outsider").delete(url).status_code == 404
    refused = client.delete(url)
    assert refused.status_code == 409, refused.content
    assert refused.json()["containers"][0]["key"] == f"{host.pk}:{cid[:12]}" and user in refused.json()["detail"]
    alpha.docker("rm", "-f", user)
    assert client.delete(url).status_code == 204
    assert alpha.docker("volume", "inspect", name, check=False).returncode != 0
    assert client.delete(url).status_code == 404
    assert set(Event.objects.filter(host=host, type__startswith="volume.").values_list("type", flat=True)) == {
        "volume.created", "volume.remove_refused", "volume.removed"}


def test_volume_prune_dry_run_lists_exactly_what_the_real_run_removes(people, alpha, make_host, run_container, cleanup, unique):
    host = make_host(alpha)
    label = f"dockmon.test.prune={unique}"
    names = [f"prune-{i}-{unique}" for i in range(3)]
    for name in names:
        cleanup["volume"].append(name)
        alpha.docker("volume", "create", "--label", label, name)
    other = f"prune-other-{unique}"  # no label: out of this prune's reach
    cleanup["volume"].append(other)
    alpha.docker("volume", "create", other)
    run_container(alpha, f"prune-user-{unique}", "true", detach=False, extra=("-v", f"{names[0]}:/data"))
    _grant(people.granted, host, "view", "operate")
    url = f"/api/v1/hosts/{host.pk}/volumes/prune/"
    assert people.client("granted").post(url, {"dry_run": True}, format="json").status_code == 403
    _grant(people.granted, host, "deploy")
    client = people.client("granted")

    dry = client.post(url, {"dry_run": True, "labels": [label]}, format="json")
    assert dry.status_code == 200, dry.content
    assert [v["name"] for v in dry.json()["volumes"]] == sorted(names[1:])
    assert alpha.docker("volume", "inspect", names[1], check=False).returncode == 0
    real = client.post(url, {"dry_run": False, "labels": [label]}, format="json").json()
    assert real["volumes"] == dry.json()["volumes"] and real["failed"] == []
    assert real["space_reclaimed"] == dry.json()["space_reclaimed"]
    for name in names[1:]:
        assert alpha.docker("volume", "inspect", name, check=False).returncode != 0
    assert alpha.docker("volume", "inspect", names[0], check=False).returncode == 0  # its stopped user keeps it
    assert alpha.docker("volume", "inspect", other, check=False).returncode == 0


# --- networks --------------------------------------------------------------------------------
def test_networks_are_created_with_checked_input_and_refused_removal_while_in_use(people, alpha, make_host, run_container, cleanup,
                                                                                  unique):
    host = make_host(alpha)
    name = f"net-{unique}"
    cleanup["network"].append(name)
    subnet = _subnet()
    body = {"host": str(host.pk), "name": name, "driver": "bridge", "internal": True, "subnet": subnet, "labels": {"t": unique}}
    assert people.client("outsider").post("/api/v1/networks/", body, format="json").status_code == 404
    _grant(people.granted, host, "view", "operate")
    assert people.client("granted").post("/api/v1/networks/", body, format="json").status_code == 403
    _grant(people.granted, host, "deploy")
    client = people.client("granted")

    bad = client.post("/api/v1/networks/", {**body, "subnet": "198.18.300.0/24"}, format="json")
    assert bad.status_code == 400 and "subnet" in bad.json()
    assert client.post("/api/v1/networks/", {**body, "gateway": "10.0.0.1"}, format="json").status_code == 400
    wrong_driver = client.post("/api/v1/networks/", {**body, "driver": "host"}, format="json")
    assert wrong_driver.status_code == 400 and "driver" in wrong_driver.json()
    created = client.post("/api/v1/networks/", body, format="json")
    assert created.status_code == 201, created.content
    row = created.json()
    assert row["name"] == name and row["internal"] is True and row["subnets"] == [subnet] and row["driver"] == "bridge"
    assert alpha.docker("network", "inspect", "-f", "{{.Internal}}", name).stdout.strip() == "true"
    taken = client.post("/api/v1/networks/", body, format="json")
    assert taken.status_code == 400 and "name" in taken.json()
    cleanup["network"].append(f"{name}-2")
    overlap = client.post("/api/v1/networks/", {**body, "name": f"{name}-2"}, format="json")
    assert overlap.status_code == 400 and "subnet" in overlap.json(), overlap.content

    user = f"net-user-{unique}"
    cid = run_container(alpha, user, network=name)
    listed = _rows(client.get("/api/v1/networks/", {"host": str(host.pk)}))[name]
    assert listed["id"] == row["id"] and [m["key"] for m in listed["containers"]] == [f"{host.pk}:{cid[:12]}"]
    assert listed["containers"][0]["ipv4"].startswith(subnet.rsplit(".", 1)[0])
    assert people.client("outsider").get(f"/api/v1/networks/{row['id']}/").status_code == 404
    assert client.get(f"/api/v1/networks/{row['id']}/").json()["name"] == name

    url = f"/api/v1/networks/{row['id']}/"
    assert people.client("outsider").delete(url).status_code == 404
    refused = client.delete(url)
    assert refused.status_code == 409, refused.content
    assert refused.json()["containers"][0]["key"] == f"{host.pk}:{cid[:12]}" and user in refused.json()["detail"]
    alpha.docker("rm", "-f", user)
    assert client.delete(url).status_code == 204
    assert alpha.docker("network", "inspect", name, check=False).returncode != 0
    predefined = _rows(client.get("/api/v1/networks/", {"host": str(host.pk)}))["none"]
    assert client.delete(f"/api/v1/networks/{predefined['id']}/").status_code == 409
    assert Event.objects.filter(host=host, type="network.removed", actor=people.granted).exists()


def test_a_container_is_connected_and_disconnected_with_an_alias(people, alpha, make_host, containers_to_remove, sync_container,
                                                               cleanup, unique):
    host = make_host(alpha)
    first, second = f"conn-a-{unique}", f"conn-b-{unique}"
    for name in (first, second):
        cleanup["network"].append(name)
        alpha.docker("network", "create", "--internal", "--subnet", _subnet(), name)
    container = f"conn-c-{unique}"
    containers_to_remove.append((alpha, container))
    cid = alpha.docker("create", "--network", first, "--name", container, "dockmon/busybox:latest", "sleep", "60").stdout.strip()
    row = sync_container(host, cid)
    network_id = alpha.docker("network", "inspect", "-f", "{{.Id}}", second).stdout.strip()
    url = f"/api/v1/networks/{host.pk}:{network_id[:12]}/"
    _grant(people.granted, host, "view", "operate")
    assert people.client("granted").post(url + "connect/", {"container": row.key}, format="json").status_code == 403
    _grant(people.granted, host, "deploy")
    client = people.client("granted")

    connected = client.post(url + "connect/", {"container": row.key, "aliases": ["db"]}, format="json")
    assert connected.status_code == 200, connected.content
    assert row.key in [m["key"] for m in connected.json()["containers"]]
    aliases = alpha.docker("inspect", "-f", f'{{{{json (index .NetworkSettings.Networks "{second}").Aliases}}}}', container).stdout
    assert "db" in aliases
    unknown = client.post(url + "connect/", {"container": f"{host.pk}:{'0' * 12}"}, format="json")
    assert unknown.status_code == 400 and "container" in unknown.json()

    disconnected = client.post(url + "disconnect/", {"container": row.key}, format="json")
    assert disconnected.status_code == 200, disconnected.content
    assert row.key not in [m["key"] for m in disconnected.json()["containers"]]
    networks = alpha.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container).stdout
    assert second not in networks and first in networks
    assert Event.objects.filter(host=host, type__in=["network.connected", "network.disconnected"]).count() == 2
