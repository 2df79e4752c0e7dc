"""Two monitors over 20 real engines: every host watched exactly once, and a killed monitor's
hosts taken over within 30 s with what happened in the gap reconciled."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from containers.models import Container, DockerHost, HostLease
from testkit import testing

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ENGINES = 20
WATCH_RE = re.compile(r"watch (start|stop) ([0-9a-f-]{36})")


def watching(process: testing.ManagedProcess) -> set[str]:
    """The hosts a monitor process watches now, from its own log of watchers started/stopped."""
    current: set[str] = set()
    try:
        text = process.log_path.read_text(errors="replace")
    except OSError:
        return current
    for what, host_id in WATCH_RE.findall(text):
        (current.add if what == "start" else current.discard)(host_id)
    return current


@pytest.fixture
def engines(testbed, unique):
    names = [f"so{unique[:6]}{i:02d}" for i in range(ENGINES)]
    started = testbed.add_engines(names)
    yield started
    testbed.remove_engines(names)


def test_two_monitors_share_twenty_engines_and_take_over_a_dead_ones_hosts(testbed, engines, make_host, monitor, unique):
    busybox = testbed.busybox_image
    hosts = [make_host(engine, name=f"so-{unique}-{i:02d}") for i, engine in enumerate(engines)]
    host_ids = {str(h.pk) for h in hosts}
    by_id = {str(h.pk): engine for h, engine in zip(hosts, engines, strict=True)}
    for engine in engines:
        engine.docker("run", "-d", "--network", "none", "--name", f"w-{unique}", busybox, "sleep", "3600")

    # Events only (no periodic reconcile), a lease renewed every second and kept 15 s (the default).
    env = {"DOCKMON_HOST_REFRESH_SECONDS": "1", "DOCKMON_MONITOR_LEASE_SECONDS": "15", "DOCKMON_RECONCILE_SECONDS": "3600"}
    first = monitor(**env)
    testing.wait_for(lambda: watching(first) == host_ids, timeout=60, message=lambda: f"the first monitor on all hosts: {first.log()}")
    second = monitor(**env)

    def split() -> bool:
        a, b = watching(first), watching(second)
        assert not (a & b), f"hosts watched twice: {a & b}"
        return a | b == host_ids and len(a) == len(b) == ENGINES // 2

    testing.wait_for(split, timeout=60, interval=0.2, message=lambda: f"an even split; {first.log()} {second.log()}")
    testing.wait_for(lambda: DockerHost.objects.filter(pk__in=host_ids, status="online").count() == ENGINES, timeout=60,
                     message="every host online")
    testing.wait_for(lambda: Container.objects.filter(host_id__in=host_ids, name=f"w-{unique}", state="running").count() == ENGINES,
                     timeout=60, message="every container recorded")
    owners = dict(HostLease.objects.filter(host_id__in=host_ids).values_list("host_id", "owner"))
    assert len(set(owners.values())) == 2 and all(owners.values())
    # The split holds (sampled for a few lease renewals): never a host under two monitors.
    for _ in range(10):
        assert split()
        time.sleep(0.3)

    # Both watch live: a stop on every engine is seen through the events.
    for engine in engines:
        engine.docker("stop", "-t", "0", f"w-{unique}")
    testing.wait_for(lambda: Container.objects.filter(host_id__in=host_ids, name=f"w-{unique}", state="exited").count() == ENGINES,
                     timeout=30, message="every stop seen")

    # Kill the first monitor outright; in the gap, change what runs on its hosts.
    orphaned = watching(first)
    os.killpg(first.pid, signal.SIGKILL)
    first.stop()
    killed = time.monotonic()
    for host_id in orphaned:
        engine = by_id[host_id]
        engine.docker("rm", "-f", f"w-{unique}")
        engine.docker("run", "-d", "--network", "none", "--name", f"gap-{unique}", busybox, "sleep", "3600")

    testing.wait_for(lambda: watching(second) == host_ids, timeout=30, interval=0.2,
                     message=lambda: f"the takeover within 30 s: {second.log()}")
    takeover = time.monotonic() - killed
    print(f"takeover of {len(orphaned)} hosts after {takeover:.1f} s")
    # Reconciled on connect: the gap's removals and new containers are all recorded.
    testing.wait_for(
        lambda: Container.objects.filter(host_id__in=orphaned, name=f"gap-{unique}", state="running", removed_at__isnull=True).count()
        == len(orphaned),
        timeout=30, message="the containers created in the gap",
    )
    assert not Container.objects.filter(host_id__in=orphaned, name=f"w-{unique}", removed_at__isnull=True).exists()
    assert set(HostLease.objects.filter(host_id__in=host_ids).values_list("owner", flat=True)) == {
        HostLease.objects.get(host_id=next(iter(host_ids))).owner
    }
    # And it watches them live: a stop on a taken-over host arrives as an event.
    host_id = sorted(orphaned)[0]
    by_id[host_id].docker("stop", "-t", "0", f"gap-{unique}")
    testing.wait_for(lambda: Container.objects.filter(host_id=host_id, name=f"gap-{unique}", state="exited").exists(), timeout=20,
                     message="a live event after the takeover")


def test_two_web_processes_behind_one_address_both_stream_every_event(admin, make_host, alpha, monitor, run_container, unique):
    """Several daphne processes share the WebSocket fan-out through Redis: a client on either
    gets the event, and each process hears it once (one pub/sub subscription per process)."""
    from accounts.models import APIToken

    ports = [testing.free_port(), testing.free_port()]
    webs = [testing.start_daphne(port) for port in ports]
    clients = []
    try:
        host = make_host(alpha)
        name = f"fan-{unique}"
        run_container(alpha, name)
        monitor()
        row = testing.wait_for(lambda: Container.objects.filter(host=host, name=name, state="running").first(), timeout=30,
                               message="the container recorded")
        _, raw = APIToken.issue(admin, name="ws")
        for port in ports:
            client = testing.WSClient(f"ws://127.0.0.1:{port}/ws/events/?token={raw}")
            client.wait_for(lambda m: m["type"] == "hello", timeout=10)
            clients.append(client)
        alpha.docker("stop", "-t", "0", name)
        for client in clients:
            message = client.wait_for(lambda m: m["type"] == "container.state" and m["data"]["key"] == row.key and m["data"]["state"] == "exited",
                                      timeout=15)
            assert message["ts"].endswith("Z")
        for client in clients:
            client.drain(1.0)
            exited = [m for m in client.messages if m["type"] == "container.state" and m["data"]["key"] == row.key
                      and m["data"]["state"] == "exited"]
            assert len(exited) == 1, "each client gets the event exactly once"
    finally:
        for client in clients:
            client.close()
        for web in webs:
            web.stop()
