"""The update executor end to end: real engines, the real registry on 127.0.0.1:5000."""

from __future__ import annotations

import json
import random
import threading

import pytest
from django.db import close_old_connections, connection
from django.test import override_settings

from containers.models import Container, ContainerTag, Tag
from updates import executor
from updates.choices import RunStatus
from updates.models import ContainerUpdate, RolledBackDigest, UpdateRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']
FAST = {"DOCKMON_UPDATE_GRACE_SECONDS": 1.0, "DOCKMON_UPDATE_HEALTH_TIMEOUT": 20, "DOCKMON_UPDATE_STOP_TIMEOUT": 2}


def _inspect(eng, name):
    return json.loads(eng.docker("inspect", name).stdout)[0]


def _names(eng, name):
    out = eng.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}").stdout.split()
    return sorted(n for n in out if n == name or n.startswith(f"{name}-dockmon-backup-"))


@pytest.fixture
def release(testbed, repo, images_to_remove):
    """release(tag, marker, engine=..., **build) → (ref, digest): build and push one release."""

    def make(tag, marker, engine="alpha", cmd=LOOP, healthcheck=None):
        ref = testbed.image_ref(repo, tag)
        testbed.build_image(engine, ref, marker, cmd=cmd, healthcheck=healthcheck)
        images_to_remove.append((testbed.engines[engine], ref))
        return ref, testbed.push(engine, ref)

    return make


@pytest.fixture
def networks(alpha, unique):
    third = random.randint(0, 250)
    names = [f"ua-{unique}", f"ub-{unique}"]
    for offset, name in enumerate(names):
        alpha.docker("network", "create", "--internal", "--subnet", f"198.{18 + offset}.{third}.0/24", name)
    yield names, third
    for name in names:
        alpha.docker("network", "rm", name, check=False)


def _update(container, **kwargs):
    with override_settings(**FAST):
        run = executor.request_update(container, enqueue=False, **kwargs)
        UpdateRun.objects.filter(pk=run.pk).update(queued_at=None)
        return executor.execute(run.pk)


def _cleanup(alpha, name):
    for n in _names(alpha, name):
        alpha.docker("rm", "-f", n, check=False)


def test_full_configuration_survives_an_update_and_the_volume_keeps_its_data(
    testbed, alpha, make_host, sync, release, networks, unique, tmp_path, containers_to_remove
):
    """GIVEN a container with binds, a named volume, an anonymous volume, a published port, env,
    labels, two internal networks with aliases and static IPs, restart policy and limits
    WHEN a new release is pushed and DockMon updates it
    THEN docker inspect shows the same configuration on the new digest, and the data is intact."""
    (net_a, net_b), third = networks
    ref, first = release("1.0", "one")
    name = f"full-{unique}"
    bind = tmp_path / "bind"
    bind.mkdir()
    (bind / "hello").write_text("bound")
    containers_to_remove.append((alpha, name))
    alpha.docker(
        "run", "-d", "--name", name, "--network", net_a, "--network-alias", "web", "--ip", f"198.18.{third}.10",
        "-e", "FOO=bar", "-l", "app=demo", "-l", "tier=front", "-p", "127.0.0.1::8080",
        "-v", f"{bind}:/data/bind", "-v", f"vol-{unique}:/data/named", "-v", "/data/anon", "--tmpfs", "/scratch:size=8m",
        "--restart", "unless-stopped", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "100",
        "--cap-add", "NET_ADMIN", "--ulimit", "nofile=1024:2048", "--sysctl", "net.ipv4.ip_forward=1",
        "--device", "/dev/null:/dev/xnull", "--log-opt", "max-size=1m", "--hostname", "myhost",
        "--add-host", "db.local:127.0.0.2", "--dns", "127.0.0.53", "--security-opt", "no-new-privileges",
        ref,
    )
    alpha.docker("network", "connect", "--alias", "db", "--ip", f"198.19.{third}.20", net_b, name)
    alpha.docker("exec", name, "sh", "-c", "echo kept > /data/named/proof && echo anon > /data/anon/proof")
    before = _inspect(alpha, name)
    host = make_host(alpha)
    sync(host)
    old = Container.objects.get(host=host, name=name)
    tag = Tag.objects.create(name=f"t-{unique}")
    ContainerTag.objects.create(container=old, tag=tag)

    testbed.build_image("beta", ref, "two", cmd=LOOP)  # new release pushed from the other engine
    second = testbed.push("beta", ref)
    assert second != first

    run = _update(old)
    assert run.status == RunStatus.SUCCEEDED, run.log
    after = _inspect(alpha, name)
    assert after["Id"] != before["Id"] and after["Image"] != before["Image"]
    assert any(d.endswith(second) for d in alpha.inspect(after["Image"])["RepoDigests"])
    assert (run.from_digest, run.to_digest) == (first, second)
    for field in ("RestartPolicy", "Memory", "NanoCpus", "PidsLimit", "CapAdd", "Ulimits", "LogConfig", "ExtraHosts", "Dns",
                  "Tmpfs", "NetworkMode", "SecurityOpt", "PortBindings", "Sysctls", "Devices"):
        assert after["HostConfig"][field] == before["HostConfig"][field], field
    for field in ("Env", "Labels", "Hostname", "Cmd", "ExposedPorts"):
        assert after["Config"][field] == before["Config"][field], field
    mounts = lambda d: sorted((m["Type"], m.get("Name") or m["Source"], m["Destination"]) for m in d["Mounts"])  # noqa: E731
    assert mounts(after) == mounts(before)  # the anonymous volume is re-attached by name (it shows in Binds now)
    nets_before, nets_after = before["NetworkSettings"]["Networks"], after["NetworkSettings"]["Networks"]
    assert sorted(nets_after) == sorted([net_a, net_b])
    for network in (net_a, net_b):
        assert nets_after[network]["IPAMConfig"] == nets_before[network]["IPAMConfig"]
    assert "web" in nets_after[net_a]["Aliases"] and "db" in nets_after[net_b]["Aliases"]
    assert alpha.docker("exec", name, "cat", "/data/named/proof", "/data/anon/proof", "/data/bind/hello").stdout.split() == ["kept", "anon", "bound"]
    assert alpha.docker("exec", name, "cat", "/etc/dockmon-release").stdout.strip() == "two"
    assert _names(alpha, name) == [name], "the backup is removed"

    # Records moved to the new key in one go.
    new_key = f"{host.pk}:{after['Id'][:12]}"
    assert run.new_key == new_key and run.old_key == old.key
    assert Container.objects.get(pk=old.key).replaced_by == new_key
    assert ContainerTag.objects.filter(container_id=new_key, tag=tag).exists()
    row = ContainerUpdate.objects.get(container_id=new_key)
    assert row.current_digest == second and row.update_available is False
    assert set(run.timings) >= {"pull", "stop", "create", "health", "cleanup"}
    alpha.docker("volume", "rm", "-f", f"vol-{unique}", check=False)


@pytest.mark.parametrize("broken", ["exits", "unhealthy"])
def test_a_broken_release_is_rolled_back(testbed, alpha, make_host, sync, release, unique, containers_to_remove, broken):
    """GIVEN a healthy container WHEN the new release exits at once / never turns healthy
    THEN the original runs again under its name on the old digest, and the run says why."""
    ref, first = release("1.0", "one")
    name = f"rb-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "none", "--name", name, "--restart", "unless-stopped", ref)
    before = _inspect(alpha, name)
    host = make_host(alpha)
    sync(host)
    old = Container.objects.get(host=host, name=name)
    if broken == "exits":
        testbed.build_image("beta", ref, "two", cmd=["false"])
    else:
        testbed.build_image("beta", ref, "two", cmd=LOOP, healthcheck="--interval=1s --timeout=1s --retries=1000 CMD false")
    second = testbed.push("beta", ref)

    with override_settings(DOCKMON_UPDATE_HEALTH_TIMEOUT=4):
        run = _update(old, health_timeout=4)
    try:
        assert run.status == RunStatus.ROLLED_BACK, run.log
        after = _inspect(alpha, name)
        assert after["Id"] == before["Id"] and after["Image"] == before["Image"]
        assert after["State"]["Running"] is True
        assert _names(alpha, name) == [name]
        reason = "restarting" if broken == "exits" else "HEALTHCHECK did not report healthy within 4s"
        assert reason in run.error, run.error
        assert run.to_digest == second and run.from_digest == first
        assert RolledBackDigest.objects.filter(container_id=old.key, digest=second).exists()
        old.refresh_from_db()
        assert old.replaced_by == "" and old.removed_at is None
        if run.new_key:
            assert Container.objects.get(pk=run.new_key).replaced_by == old.key
    finally:
        _cleanup(alpha, name)


def test_two_concurrent_requests_one_runs_the_other_is_refused(alpha, make_host, sync, release, unique, containers_to_remove):
    ref, _ = release("1.0", "one")
    name = f"cc-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "none", "--name", name, ref)
    host = make_host(alpha)
    sync(host)
    container = Container.objects.get(host=host, name=name)
    barrier = threading.Barrier(2)
    outcomes = []

    def ask():
        close_old_connections()
        try:
            barrier.wait(5)
            outcomes.append(executor.request_update(container, enqueue=False))
        except executor.RunRefused as exc:
            outcomes.append(exc)
        finally:
            connection.close()  # this thread's own connection (PostgreSQL keeps it open otherwise)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    runs = [o for o in outcomes if isinstance(o, UpdateRun)]
    refused = [o for o in outcomes if isinstance(o, executor.RunRefused)]
    assert len(runs) == 1 and len(refused) == 1, outcomes
    assert refused[0].status == 409 and "being updated already" in str(refused[0])
    assert UpdateRun.objects.filter(container_name=name).count() == 1


def test_a_stopped_container_stays_stopped(testbed, alpha, make_host, sync, release, unique, containers_to_remove):
    ref, _ = release("1.0", "one")
    name = f"st-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("create", "--network", "none", "--name", name, ref)
    host = make_host(alpha)
    sync(host)
    testbed.build_image("beta", ref, "two", cmd=LOOP)
    testbed.push("beta", ref)
    run = _update(Container.objects.get(host=host, name=name))
    try:
        assert run.status == RunStatus.SUCCEEDED, run.log
        after = _inspect(alpha, name)
        assert after["State"]["Status"] == "created" and after["Id"][:12] == run.new_key.split(":")[1]
        assert "stays stopped" in run.log
    finally:
        _cleanup(alpha, name)


def test_a_one_shot_container_that_exits_zero_passes(testbed, alpha, make_host, sync, release, unique, containers_to_remove):
    ref, _ = release("1.0", "one", cmd=LOOP)
    name = f"os-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "none", "--name", name, ref)
    host = make_host(alpha)
    sync(host)
    testbed.build_image("beta", ref, "two", cmd=["true"])
    testbed.push("beta", ref)
    run = _update(Container.objects.get(host=host, name=name))
    try:
        assert run.status == RunStatus.SUCCEEDED, run.log
        assert "one-shot success" in run.log
    finally:
        _cleanup(alpha, name)


def test_dependents_sharing_the_network_are_recreated_after_it(testbed, alpha, make_host, sync, release, unique, containers_to_remove):
    ref, _ = release("1.0", "one")
    name, side = f"np-{unique}", f"side-{unique}"
    containers_to_remove.extend([(alpha, name), (alpha, side)])
    alpha.docker("run", "-d", "--network", "none", "--name", name, ref)
    alpha.docker("run", "-d", "--network", f"container:{name}", "--name", side, "-e", "SIDE=1", "dockmon/busybox:latest", *LOOP)
    side_before = _inspect(alpha, side)
    host = make_host(alpha)
    sync(host)
    testbed.build_image("beta", ref, "two", cmd=LOOP)
    testbed.push("beta", ref)
    run = _update(Container.objects.get(host=host, name=name))
    try:
        assert run.status == RunStatus.SUCCEEDED, run.log
        main_after, side_after = _inspect(alpha, name), _inspect(alpha, side)
        assert side_after["Id"] != side_before["Id"] and side_after["State"]["Running"]
        assert side_after["HostConfig"]["NetworkMode"] == f"container:{main_after['Id']}"
        assert "SIDE=1" in side_after["Config"]["Env"]
        assert _names(alpha, side) == [side] and _names(alpha, name) == [name]
        assert Container.objects.get(pk=f"{host.pk}:{side_before['Id'][:12]}").replaced_by == f"{host.pk}:{side_after['Id'][:12]}"
    finally:
        _cleanup(alpha, name)
        _cleanup(alpha, side)


def test_a_release_that_fails_the_dockmon_http_check_is_rolled_back(testbed, alpha, make_host, sync, release, unique, containers_to_remove):
    """GIVEN a container serving HTTP on 127.0.0.1 with a DockMon HTTP check WHEN the new release
    runs but no longer serves THEN the gate fails on the HTTP check and the original comes back."""
    from dockmon_site.testing import free_port
    from healthchecks.models import HealthCheck

    port = free_port()
    serve = ["sh", "-c", f"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"]
    ref, first = release("1.0", "one", cmd=serve)
    name = f"http-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "host", "--name", name, ref)
    before = _inspect(alpha, name)
    host = make_host(alpha)
    sync(host)
    old = Container.objects.get(host=host, name=name)
    HealthCheck.objects.create(container=old, name="home", url=f"http://127.0.0.1:{port}/", interval_seconds=30, timeout_seconds=1)
    testbed.build_image("beta", ref, "two", cmd=LOOP)  # runs, but serves nothing
    second = testbed.push("beta", ref)

    with override_settings(DOCKMON_UPDATE_HEALTH_TIMEOUT=4):
        run = _update(old, health_timeout=4)
    try:
        assert run.status == RunStatus.ROLLED_BACK, run.log
        assert "HTTP check" in run.error, run.error
        after = _inspect(alpha, name)
        assert after["Id"] == before["Id"] and after["State"]["Running"] is True
        assert run.to_digest == second and run.from_digest == first
        # The check is back on the original container, and passes there again.
        assert HealthCheck.objects.get(name="home").container_id == old.key
    finally:
        _cleanup(alpha, name)


@pytest.mark.parametrize("keep", [0, 1])
def test_old_images_beyond_the_last_n_are_removed(testbed, alpha, make_host, sync, release, unique, containers_to_remove, keep):
    """GIVEN DOCKMON_UPDATE_KEEP_IMAGES=N WHEN an update succeeds THEN the image it ran before is
    kept for a manual rollback when N >= 1 and removed from the engine when N = 0."""
    ref, _ = release("1.0", "one")
    name = f"prune-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "none", "--name", name, ref)
    old_image = _inspect(alpha, name)["Image"]
    host = make_host(alpha)
    sync(host)
    old = Container.objects.get(host=host, name=name)
    testbed.build_image("beta", ref, "two", cmd=LOOP)
    testbed.push("beta", ref)
    with override_settings(DOCKMON_UPDATE_KEEP_IMAGES=keep):
        run = _update(old)
    try:
        assert run.status == RunStatus.SUCCEEDED, run.log
        assert _inspect(alpha, name)["Image"] != old_image
        still_there = alpha.docker("image", "inspect", old_image, check=False).returncode == 0
        assert still_there is (keep >= 1), run.log
    finally:
        _cleanup(alpha, name)
