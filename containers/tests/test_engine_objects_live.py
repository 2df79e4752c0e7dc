"""Images, volumes and networks changed with the CLI reach the WebSocket through the monitor's
event stream (no polling), only for people who may view the host."""

from __future__ import annotations

import time

import pytest
from guardian.shortcuts import assign_perm

from accounts.models import APIToken
from containers.models import DockerHost
from testkit.testing import WSClient, wait_for

pytestmark = pytest.mark.slow


def _ws(daphne, user) -> WSClient:
    _, raw = APIToken.issue(user, name="ws")
    client = WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={raw}")
    client.wait_for(lambda m: m["type"] == "hello", timeout=5)
    return client


def test_cli_made_volumes_networks_and_images_are_announced_to_viewers_of_the_host(people, make_host, alpha, testbed, monitor, daphne,
                                                                                   unique):
    host = make_host(alpha)
    assign_perm("containers.view_dockerhost", people.granted, host)
    monitor(DOCKMON_RECONCILE_SECONDS=3600)  # a long reconcile period: only events can explain what follows
    wait_for(lambda: DockerHost.objects.get(pk=host.pk).status == "online", 15, message="host online")
    viewer, outsider = _ws(daphne, people.granted), _ws(daphne, people.outsider)
    volume, network = f"live-vol-{unique}", f"live-net-{unique}"
    ref = testbed.image_ref(f"t/live-{unique}", "1")
    try:
        began = time.monotonic()
        alpha.docker("volume", "create", volume)
        message = viewer.wait_for(lambda m: m["type"] == "volume.changed" and m["data"]["name"] == volume, timeout=5)
        assert time.monotonic() - began < 2 and message["data"]["action"] == "create" and message["data"]["host"] == str(host.pk)

        began = time.monotonic()
        alpha.docker("network", "create", "--internal", "--subnet", "198.19.251.0/24", network)
        message = viewer.wait_for(lambda m: m["type"] == "network.changed" and m["data"]["name"] == network, timeout=5)
        assert time.monotonic() - began < 2 and message["data"]["action"] == "create"

        alpha.docker("tag", "dockmon/busybox:latest", ref)
        viewer.wait_for(lambda m: m["type"] == "image.changed" and m["data"]["action"] == "tag", timeout=5)

        alpha.docker("volume", "rm", volume)
        viewer.wait_for(lambda m: m["type"] == "volume.changed" and m["data"]["name"] == volume and m["data"]["action"] == "destroy",
                        timeout=5)
        # Someone who may not view the host hears nothing of it.
        assert not [m for m in outsider.drain(1) if m["type"].endswith(".changed")]
    finally:
        viewer.close()
        outsider.close()
        alpha.docker("volume", "rm", "-f", volume, check=False)
        alpha.docker("network", "rm", network, check=False)
        alpha.docker("rmi", ref, check=False)
