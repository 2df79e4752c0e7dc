"""The update executor end to end: real engines, the real registry on 127.0.0.1:5000."""

from __future__ import annotations

import json
import random
import threading

import pytest
from django.db import close_old_connections, connection
from django.test import override_settings

from containers.models import Container, ContainerTag, Event, Tag
from updates import executor, runqueue
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
        run = runqueue.request_update(container, enqueue=False, **kwargs)
        UpdateRun.objects.filter(pk=run.pk).update(queued_at=None)
        return executor.execute(run.pk)


def _event(run, type_):
    """The one event row of `type_` for this run (update events carry the run id)."""
    rows = list(Event.objects.filter(type=type_, category="update", data__run=run.pk))
    assert len(rows) == 1, (type_, [(e.type, e.message) for e in Event.objects.filter(data__run=run.pk)])
    return rows[0]


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
    event = _event(run, "update.succeeded")
    assert event.container_key == new_key and event.data["to_digest"] == second and event.data["status"] == "succeeded"
    assert not Event.objects.filter(type__in=["update.rolled_back", "update.failed"], data__run=run.pk).exists()
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
        event = _event(run, "update.rolled_back")
        assert event.container_key == old.key and event.severity == "warning" and reason in event.message
        assert not Event.objects.filter(type__in=["update.succeeded", "update.failed"], data__run=run.pk).exists()
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
            outcomes.append(runqueue.request_update(container, enqueue=False))
        except runqueue.RunRefused as exc:
            outcomes.append(exc)
        finally:
            connection.close()  # this thread's own connection (PostgreSQL keeps it open otherwise)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    runs = [o for o in outcomes if isinstance(o, UpdateRun)]
    refused = [o for o in outcomes if isinstance(o, runqueue.RunRefused)]
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


@pytest.mark.parametrize(("new_cmd", "outcome"), [(["true"], RunStatus.SUCCEEDED), (["false"], RunStatus.ROLLED_BACK)])
def test_a_one_shot_release_with_restart_no(testbed, alpha, make_host, sync, release, unique, containers_to_remove, new_cmd, outcome):
    """GIVEN a container with restart policy `no` WHEN the new release runs once and exits
    THEN exit 0 is a one-shot success, and a non-zero exit is rolled back to the original."""
    ref, _ = release("1.0", "one", cmd=LOOP)
    name = f"os-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "none", "--restart", "no", "--name", name, ref)
    before = _inspect(alpha, name)
    host = make_host(alpha)
    sync(host)
    old = Container.objects.get(host=host, name=name)
    testbed.build_image("beta", ref, "two", cmd=new_cmd)
    testbed.push("beta", ref)
    run = _update(old)
    try:
        assert run.status == outcome, run.log
        after = _inspect(alpha, name)
        assert _names(alpha, name) == [name]
        if outcome == RunStatus.SUCCEEDED:
            assert "one-shot success" in run.log
            assert after["Id"] != before["Id"] and after["State"]["ExitCode"] == 0
            assert _event(run, "update.succeeded").container_key == run.new_key
        else:
            assert "exit code 1" in run.error, run.error
            assert after["Id"] == before["Id"] and after["State"]["Running"] is True and after["Image"] == before["Image"]
            assert _event(run, "update.rolled_back").container_key == old.key
            assert not Event.objects.filter(type="update.succeeded", data__run=run.pk).exists()
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
    from healthchecks.models import HealthCheck
    from testkit.testing import free_port

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


def test_entrypoint_links_mounts_user_and_healthcheck_survive_an_update(
    testbed, alpha, make_host, sync, release, networks, unique, containers_to_remove
):
    """GIVEN a container with --entrypoint plus its own command, --domainname, --link, --mount
    type=volume and type=tmpfs, --workdir, --user and --health-cmd WHEN it is updated THEN
    docker inspect shows all of them on the new container, and the volume keeps its data."""
    (net_a, _), third = networks
    ref, _ = release("1.0", "one")
    name, peer, volume = f"fid-{unique}", f"peer-{unique}", f"mvol-{unique}"
    containers_to_remove.extend([(alpha, name), (alpha, peer)])
    alpha.docker("run", "-d", "--name", peer, "--network", net_a, "dockmon/busybox:latest", *LOOP)
    alpha.docker(
        "run", "-d", "--name", name, "--network", net_a, "--link", f"{peer}:db",
        "--entrypoint", "/bin/sh", "--domainname", "example.test", "--workdir", "/tmp", "--user", "65534:65534",
        "--health-cmd", "true", "--health-interval", "1s", "--health-retries", "3",
        "--mount", f"type=volume,source={volume},target=/data/vol", "--mount", "type=tmpfs,target=/data/tmp,tmpfs-size=1048576",
        ref, "-c", 'trap "exit 0" TERM; while true; do sleep 1; done',
    )
    alpha.docker("exec", "-u", "0", name, "sh", "-c", "echo kept > /data/vol/proof")
    before = _inspect(alpha, name)
    assert before["Config"]["Entrypoint"] == ["/bin/sh"] and before["HostConfig"]["Mounts"]
    host = make_host(alpha)
    sync(host)
    testbed.build_image("beta", ref, "two", cmd=LOOP)
    second = testbed.push("beta", ref)
    run = _update(Container.objects.get(host=host, name=name))
    try:
        assert run.status == RunStatus.SUCCEEDED, run.log
        assert "HEALTHCHECK: healthy" in run.log
        after = _inspect(alpha, name)
        assert after["Id"] != before["Id"] and run.to_digest == second
        for field in ("Entrypoint", "Cmd", "Domainname", "WorkingDir", "User", "Healthcheck", "Env", "Labels"):
            assert after["Config"][field] == before["Config"][field], field
        for field in ("Links", "Mounts", "Binds", "NetworkMode", "Tmpfs"):
            assert after["HostConfig"].get(field) == before["HostConfig"].get(field), field
        ep_before, ep_after = before["NetworkSettings"]["Networks"][net_a], after["NetworkSettings"]["Networks"][net_a]
        assert ep_after["Links"] == ep_before["Links"] == [f"{peer}:db"]
        mounts = lambda d: sorted((m["Type"], m.get("Name") or "", m["Destination"]) for m in d["Mounts"])  # noqa: E731
        assert mounts(after) == mounts(before) == [("tmpfs", "", "/data/tmp"), ("volume", volume, "/data/vol")]
        assert alpha.docker("exec", name, "cat", "/data/vol/proof").stdout.strip() == "kept"
        assert alpha.docker("exec", name, "id", "-u").stdout.strip() == "65534"
        assert alpha.docker("exec", name, "sh", "-c", "pwd").stdout.strip() == "/tmp"
        assert alpha.docker("exec", name, "cat", "/etc/dockmon-release").stdout.strip() == "two"
        assert after["State"]["Health"]["Status"] == "healthy"
    finally:
        _cleanup(alpha, name)
        alpha.docker("volume", "rm", "-f", volume, check=False)


def test_a_container_on_another_containers_network_is_updated(testbed, alpha, make_host, sync, release, unique, containers_to_remove):
    """GIVEN a container started with --network container:X WHEN it (not X) is updated THEN the
    new one shares X's network namespace again, and X is left alone."""
    ref, _ = release("1.0", "one")
    owner, name = f"nsown-{unique}", f"nsuser-{unique}"
    containers_to_remove.extend([(alpha, owner), (alpha, name)])
    alpha.docker("run", "-d", "--network", "none", "--name", owner, "dockmon/busybox:latest", *LOOP)
    alpha.docker("run", "-d", "--network", f"container:{owner}", "--name", name, "-e", "SIDE=1", ref)
    owner_before, before = _inspect(alpha, owner), _inspect(alpha, name)
    assert before["HostConfig"]["NetworkMode"] == f"container:{owner_before['Id']}"
    host = make_host(alpha)
    sync(host)
    testbed.build_image("beta", ref, "two", cmd=LOOP)
    testbed.push("beta", ref)
    run = _update(Container.objects.get(host=host, name=name))
    try:
        assert run.status == RunStatus.SUCCEEDED, run.log
        after, owner_after = _inspect(alpha, name), _inspect(alpha, owner)
        assert after["Id"] != before["Id"] and after["State"]["Running"]
        assert after["HostConfig"]["NetworkMode"] == before["HostConfig"]["NetworkMode"]
        assert after["Config"]["Env"] == before["Config"]["Env"] and "SIDE=1" in after["Config"]["Env"]
        assert owner_after["Id"] == owner_before["Id"] and owner_after["State"]["StartedAt"] == owner_before["State"]["StartedAt"]
        assert run.dependents == []
        assert alpha.docker("exec", name, "cat", "/etc/dockmon-release").stdout.strip() == "two"
    finally:
        _cleanup(alpha, name)


def test_the_new_images_own_defaults_take_effect(testbed, alpha, make_host, sync, repo, unique, containers_to_remove, images_to_remove):
    """GIVEN a container that uses its image's CMD, ENV and LABEL defaults and adds one env var of
    its own WHEN the new release changes those defaults THEN the new container runs with the new
    image's defaults (not the old image's values pinned), plus the user's own env var."""
    old_loop = ["sh", "-c", 'trap "exit 0" TERM; echo one > /tmp/started; while true; do sleep 1; done']
    new_loop = ["sh", "-c", 'trap "exit 0" TERM; echo two > /tmp/started; while true; do sleep 1; done']
    ref = testbed.image_ref(repo, "1.0")
    testbed.build_image("alpha", ref, "one", cmd=old_loop, changes=("ENV REL=one", "ENV KEEP=image", "LABEL rel=one"))
    images_to_remove.append((alpha, ref))
    testbed.push("alpha", ref)
    name = f"defaults-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "none", "--name", name, "-e", "MINE=1", ref)
    before = _inspect(alpha, name)
    assert "REL=one" in before["Config"]["Env"] and before["Config"]["Cmd"] == old_loop
    host = make_host(alpha)
    sync(host)
    testbed.build_image("beta", ref, "two", cmd=new_loop, changes=("ENV REL=two", "LABEL rel=two"))
    images_to_remove.append((testbed.engines["beta"], ref))
    testbed.push("beta", ref)
    run = _update(Container.objects.get(host=host, name=name))
    try:
        assert run.status == RunStatus.SUCCEEDED, run.log
        after = _inspect(alpha, name)
        assert after["Config"]["Cmd"] == new_loop
        env = after["Config"]["Env"]
        assert "REL=two" in env and "MINE=1" in env
        assert "REL=one" not in env and "KEEP=image" not in env, "the old image's defaults are not pinned"
        assert after["Config"]["Labels"]["rel"] == "two"
        assert alpha.docker("exec", name, "cat", "/tmp/started").stdout.strip() == "two"
    finally:
        _cleanup(alpha, name)


def test_a_registry_that_stalls_mid_blob_fails_the_pull_in_time_and_changes_nothing(
    testbed, alpha, make_host, sync, release, repo, unique, containers_to_remove, images_to_remove
):
    """GIVEN a container whose image comes from a registry that starts stalling mid-blob (a
    stand-in in front of the real registry: fault injection) WHEN it is updated with
    DOCKMON_UPDATE_PULL_TIMEOUT=5 THEN the run fails at the pull and says so, and the engine
    still runs the same container on the same image under the same tag."""
    from testkit.registry import RegistryStandIn

    release("1.0", "one")
    front = RegistryStandIn(testbed.registry)
    try:
        front_ref = f"{front.addr}/{repo}:1.0"
        alpha.docker("pull", front_ref)
        images_to_remove.append((alpha, front_ref))
        name = f"stall-{unique}"
        containers_to_remove.append((alpha, name))
        alpha.docker("run", "-d", "--network", "none", "--name", name, front_ref)
        before = _inspect(alpha, name)
        host = make_host(alpha)
        sync(host)
        testbed.build_image("beta", testbed.image_ref(repo, "1.0"), "two", cmd=LOOP)
        testbed.push("beta", testbed.image_ref(repo, "1.0"))
        front.stall_blobs = True
        with override_settings(DOCKMON_UPDATE_PULL_TIMEOUT=5):
            run = _update(Container.objects.get(host=host, name=name))
        assert front.stalled, "the engine asked for a blob of the new release"
        assert run.status == RunStatus.FAILED, run.log
        assert run.stage == "pull" and "did not finish within 5 s" in run.error, run.error
        assert _event(run, "update.failed").severity == "error"
        after = _inspect(alpha, name)
        assert (after["Id"], after["Image"], after["State"]["Running"]) == (before["Id"], before["Image"], True)
        assert alpha.inspect(front_ref)["Id"] == before["Image"], "the tag still names the old image"
        assert _names(alpha, name) == [name]
    finally:
        front.stop()
