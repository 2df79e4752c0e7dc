"""Recreating a container from its inspect keeps everything the user set (real engine)."""

from __future__ import annotations

import json
import random

import pytest

from containers import engine
from containers.engine import images as engine_images
from containers.engine import lifecycle as engine_lifecycle
from containers.engine import recreate as engine_recreate

pytestmark = pytest.mark.slow

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


@pytest.fixture
def networks(alpha, unique):
    # Internal networks in 198.18.0.0/15 (benchmarking range): nothing is ever sent to them.
    third = random.randint(0, 250)
    names = [f"fa-{unique}", f"fb-{unique}"]
    for offset, name in enumerate(names):
        alpha.docker("network", "create", "--internal", "--subnet", f"198.{18 + offset}.{third}.0/24", name)
    yield names, third
    for name in names:
        alpha.docker("network", "rm", name, check=False)


def _inspect(alpha, name):
    return json.loads(alpha.docker("inspect", name).stdout)[0]


def test_a_recreated_container_keeps_the_whole_configuration(alpha, networks, containers_to_remove, unique, tmp_path):
    (net_a, net_b), third = networks
    name = f"fidelity-{unique}"
    bind = tmp_path / "bind"
    bind.mkdir()
    containers_to_remove.extend([(alpha, name), (alpha, f"{name}-old")])
    alpha.docker(
        "run", "-d", "--name", name, "--network", net_a, "--network-alias", "web", "--ip", f"198.18.{third}.10",
        "-e", "FOO=bar", "-e", "EMPTY=", "-l", "app=demo", "-l", "tier=front",
        "-v", f"{bind}:/data/bind", "-v", f"vol-{unique}:/data/named", "-v", "/data/anon", "--tmpfs", "/scratch:size=8m",
        "--restart", "unless-stopped", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "100",
        "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD", "--ulimit", "nofile=1024:2048",
        "--log-opt", "max-size=1m", "--hostname", "myhost", "--add-host", "db.local:127.0.0.2", "--dns", "127.0.0.53",
        "--workdir", "/data", "--user", "0:0", "--health-cmd", "true", "--health-interval", "5s",
        "--stop-timeout", "3", "--security-opt", "no-new-privileges",
        "dockmon/busybox:latest", *LOOP,
    )
    alpha.docker("network", "connect", "--alias", "db", "--ip", f"198.19.{third}.20", net_b, name)
    alpha.docker("exec", name, "sh", "-c", "echo kept > /data/named/proof && echo anon > /data/anon/proof")
    before = _inspect(alpha, name)

    client = engine.connect(alpha.unix_url)
    try:
        image = engine_images.inspect_image_raw(client, before["Image"])
        body, extra = engine_recreate.recreate_spec(before, image, "dockmon/busybox:latest")
        alpha.docker("stop", "-t", "1", name)
        alpha.docker("rename", name, f"{name}-old")
        new_id = engine_recreate.create_from_spec(client, name, body)
        for network, endpoint in extra:
            engine_recreate.connect_network(client, network, new_id, endpoint)
        engine_lifecycle.operate(client, new_id, "start")
    finally:
        client.close()
    after = _inspect(alpha, name)
    assert after["Id"] != before["Id"]

    for field in ("RestartPolicy", "Memory", "NanoCpus", "PidsLimit", "CapAdd", "CapDrop", "Ulimits", "LogConfig",
                  "ExtraHosts", "Dns", "Tmpfs", "NetworkMode", "SecurityOpt", "PortBindings"):
        assert after["HostConfig"][field] == before["HostConfig"][field], field
    for field in ("Env", "Labels", "Hostname", "WorkingDir", "User", "Cmd", "Healthcheck", "StopTimeout"):
        assert after["Config"][field] == before["Config"][field], field
    mounts = lambda data: sorted((m["Type"], m.get("Name") or m["Source"], m["Destination"]) for m in data["Mounts"])  # noqa: E731
    assert mounts(after) == mounts(before)  # the anonymous volume is the same volume, not a new one
    nets_before, nets_after = before["NetworkSettings"]["Networks"], after["NetworkSettings"]["Networks"]
    assert sorted(nets_after) == sorted(nets_before) == sorted([net_a, net_b])
    for network in (net_a, net_b):
        assert nets_after[network]["IPAMConfig"] == nets_before[network]["IPAMConfig"]
        assert set(nets_before[network]["Aliases"]) - {before["Id"][:12]} <= set(nets_after[network]["Aliases"])
    assert "web" in nets_after[net_a]["Aliases"] and "db" in nets_after[net_b]["Aliases"]
    assert alpha.docker("exec", name, "cat", "/data/named/proof", "/data/anon/proof").stdout.split() == ["kept", "anon"]
    alpha.docker("volume", "rm", "-f", f"vol-{unique}", check=False)


def test_values_that_came_from_the_old_image_are_not_pinned():
    container = {
        "Id": "a" * 64,
        "Config": {"Hostname": "a" * 12, "Env": ["PATH=/bin", "MINE=1"], "Cmd": ["/start"], "Labels": {"img": "1", "mine": "2"},
                   "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/srv", "User": ""},
        "HostConfig": {"NetworkMode": "none"},
        "Mounts": [],
        "NetworkSettings": {"Networks": {}},
    }
    image = {"Config": {"Env": ["PATH=/bin"], "Cmd": ["/start"], "Labels": {"img": "1"}, "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/srv"}}
    body, extra = engine_recreate.recreate_spec(container, image, "repo/app:2")
    assert body["Image"] == "repo/app:2" and body["Env"] == ["MINE=1"] and body["Labels"] == {"mine": "2"}
    for absent in ("Cmd", "ExposedPorts", "WorkingDir", "Hostname", "NetworkingConfig"):
        assert absent not in body, absent
    assert extra == []
