"""Logs, stats, disk usage, the live profiler and /metrics against real engines."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounts.models import APIToken
from containers import stats
from containers.choices import StatsTier
from containers.models import ProfileSession, StatsBatch
from containers.streams import alive_pumps

TICKER = ["sh", "-c", 'trap "exit 0" TERM; i=0; while true; do echo "tick-$i"; i=$((i+1)); sleep 0.5; done']


@pytest.mark.django_db
def test_logs_tail_streams_binary_and_very_long_lines(admin_client, make_host, alpha, run_container, sync_container, unique):
    host = make_host(alpha)
    script = (
        "echo first; echo oops >&2; echo -e 'bad \\xff\\xfe bytes'; "
        "dd if=/dev/zero bs=40000 count=1 2>/dev/null; echo; echo last; "
        'trap "exit 0" TERM; while true; do sleep 1; done'
    )
    row = sync_container(host, run_container(alpha, f"logs-{unique}", "sh", "-c", script))
    time.sleep(1.0)
    data = admin_client.get(f"/api/v1/containers/{row.key}/logs/?tail=50").data
    lines = data["lines"]
    texts = [line["text"] for line in lines]
    assert "first" in texts and "last" in texts
    assert {"ts", "stream", "text"} == set(lines[0])
    assert lines[0]["ts"].endswith("Z")
    assert [line["stream"] for line in lines if line["text"] == "oops"] == ["stderr"]
    assert any("\ufffd" in text and "bytes" in text for text in texts)  # invalid UTF-8 replaced, not fatal
    long_line = next(text for text in texts if text.startswith("\x00"))
    assert "more bytes]" in long_line and len(long_line) < 20_000
    assert len(admin_client.get(f"/api/v1/containers/{row.key}/logs/?tail=2").data["lines"]) == 2
    download = admin_client.get(f"/api/v1/containers/{row.key}/logs/?tail=50&download=true")
    assert download["Content-Type"].startswith("text/plain") and "attachment" in download["Content-Disposition"]
    body = b"".join(download.streaming_content)  # streamed, never built whole
    assert b"stderr oops" in body and len(body) > 40_000
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert admin_client.get(f"/api/v1/containers/{row.key}/logs/", {"since": future}).data["lines"] == []
    assert admin_client.get(f"/api/v1/containers/{row.key}/logs/?tail=abc").status_code == 400


def _communicator(token: str):
    from channels.testing import WebsocketCommunicator

    from dockmon_site.asgi import application

    return WebsocketCommunicator(application, f"/ws/events/?token={token}")


async def _receive_until(communicator, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = json.loads(await communicator.receive_from(timeout=left))
        if predicate(message):
            return message
    raise AssertionError("no matching message")


@pytest.mark.django_db(transaction=True)
def test_logs_follow_streams_new_lines_and_stops_without_leaks(admin, make_host, alpha, run_container, sync_container, unique):
    host = make_host(alpha)
    row = sync_container(host, run_container(alpha, f"follow-{unique}", *TICKER))
    _, token = APIToken.issue(admin)

    async def scenario():
        communicator = _communicator(token)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"action": "logs.follow", "key": row.key, "tail": 0})
        await _receive_until(communicator, lambda m: m["type"] == "logs.following")
        first = await _receive_until(communicator, lambda m: m["type"] == "container.log")
        assert first["data"]["key"] == row.key and first["data"]["text"].startswith("tick-")
        assert first["data"]["stream"] == "stdout" and first["data"]["ts"].endswith("Z")
        later = await _receive_until(communicator, lambda m: m["type"] == "container.log" and m["data"]["text"] != first["data"]["text"])
        assert int(later["data"]["text"].split("-")[1]) > int(first["data"]["text"].split("-")[1])
        assert alive_pumps() == 2  # stdout and stderr
        await communicator.send_json_to({"action": "logs.unfollow", "key": row.key})
        await _receive_until(communicator, lambda m: m["type"] == "logs.unfollowed")
        assert alive_pumps() == 0
        # Follow again and just drop the socket: the streams end with it.
        await communicator.send_json_to({"action": "logs.follow", "key": row.key})
        await _receive_until(communicator, lambda m: m["type"] == "container.log")
        await communicator.disconnect(timeout=10)
        for _ in range(50):
            if alive_pumps() == 0:
                break
            await asyncio.sleep(0.1)
        assert alive_pumps() == 0

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_logs_follow_is_refused_without_operate(django_user_model, make_host, alpha, run_container, sync_container, unique):
    from guardian.shortcuts import assign_perm

    host = make_host(alpha)
    row = sync_container(host, run_container(alpha, f"nofollow-{unique}", *TICKER))
    viewer = django_user_model.objects.create_user(f"v{unique}", password="pw-viewer-12")
    assign_perm("containers.view_dockerhost", viewer, host)
    _, token = APIToken.issue(viewer)

    async def scenario():
        communicator = _communicator(token)
        await communicator.connect()
        await communicator.send_json_to({"action": "logs.follow", "key": row.key})
        error = await _receive_until(communicator, lambda m: m["type"] == "error")
        assert error["data"]["message"] == "No such container."
        assert alive_pumps() == 0
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_profiler_session_survives_a_disconnect_and_is_exported(admin, admin_client, make_host, alpha, run_container, sync_container, unique, settings):
    settings.DOCKMON_PROFILE_SAVE_SECONDS = 1.0
    host = make_host(alpha)
    row = sync_container(host, run_container(alpha, f"prof-{unique}", *TICKER))
    _, token = APIToken.issue(admin)

    async def scenario():
        communicator = _communicator(token)
        await communicator.connect()
        await communicator.send_json_to({"action": "profile.start", "key": row.key})
        started = await _receive_until(communicator, lambda m: m["type"] == "profile.started")
        samples = []
        while len(samples) < 3:
            samples.append(await _receive_until(communicator, lambda m: m["type"] == "profile.sample", timeout=15))
        assert {"cpu_percent", "mem_bytes", "net_rx", "pids"} <= set(samples[0]["data"])
        await communicator.disconnect(timeout=10)  # daphne gives a closing consumer 10 s as well
        return started["data"]["session"]

    session_id = async_to_sync(scenario)()
    session = ProfileSession.objects.get(pk=session_id)
    assert session.ended_at is not None and session.end_reason == "disconnected"
    assert session.sample_count >= 3 and session.container_key == row.key
    assert alive_pumps() == 0
    listed = admin_client.get("/api/v1/profiles/").data["results"]
    assert listed[0]["id"] == session_id and listed[0]["sample_count"] == session.sample_count
    csv_body = admin_client.get(f"/api/v1/profiles/{session_id}/export/?as=csv").content.decode()
    assert csv_body.splitlines()[0] == "t,cpu_percent,mem_bytes,mem_limit,net_rx,net_tx,blk_read,blk_write,pids"
    assert len(csv_body.splitlines()) == session.sample_count + 1
    exported = admin_client.get(f"/api/v1/profiles/{session_id}/export/?as=json").json()
    assert len(exported["samples"]) == session.sample_count and "cpu_percent" in exported["samples"][0]
    assert admin_client.get(f"/api/v1/profiles/{session_id}/export/?as=xml").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_profiler_saves_while_open_stops_on_request_and_replays_in_order(django_user_model, admin, admin_client, make_host, alpha,
                                                                        run_container, sync_container, unique, settings):
    """GIVEN a profile running with a 1 s save interval
    WHEN saves have happened and the client then sends profile.stop
    THEN rows were in the database while the session was open, the session closes with reason
    "stopped", and the samples endpoint replays every sample in time order to those who may see it."""
    from asgiref.sync import sync_to_async
    from channels.db import database_sync_to_async
    from guardian.shortcuts import assign_perm

    settings.DOCKMON_PROFILE_SAVE_SECONDS = 1.0
    host = make_host(alpha)
    row = sync_container(host, run_container(alpha, f"profstop-{unique}", *TICKER))
    _, token = APIToken.issue(admin)

    async def scenario():
        communicator = _communicator(token)
        await communicator.connect()
        await communicator.send_json_to({"action": "profile.start", "key": row.key})
        session_id = (await _receive_until(communicator, lambda m: m["type"] == "profile.started"))["data"]["session"]
        saved = None
        for _ in range(150):  # up to ~30 s on a busy machine; the save interval is 1 s
            saved = await database_sync_to_async(ProfileSession.objects.get)(pk=session_id)
            if saved.sample_count >= 2:
                break
            await asyncio.sleep(0.2)
        assert saved.sample_count >= 2, "no periodic save while the session was open"
        assert saved.ended_at is None and saved.end_reason == ""
        while_open = (await sync_to_async(admin_client.get)(f"/api/v1/profiles/{session_id}/samples/")).data
        await communicator.send_json_to({"action": "profile.stop", "session": session_id})
        stopped = await _receive_until(communicator, lambda m: m["type"] == "profile.stopped")
        assert stopped["data"] == {"session": session_id, "key": row.key, "reason": "stopped"}
        await communicator.send_json_to({"action": "profile.stop", "session": session_id})
        again = await _receive_until(communicator, lambda m: m["type"] == "error")
        assert again["data"]["session"] == session_id
        await communicator.disconnect(timeout=10)
        return session_id, saved.sample_count, while_open

    session_id, saved_while_open, while_open = async_to_sync(scenario)()
    assert while_open["open"] is True and while_open["count"] >= saved_while_open
    session = ProfileSession.objects.get(pk=session_id)
    assert session.end_reason == "stopped" and session.ended_at is not None  # not "disconnected": it was stopped first
    assert session.sample_count >= saved_while_open and session.sample_count == len(session.samples)
    assert alive_pumps() == 0

    replay = admin_client.get(f"/api/v1/profiles/{session_id}/samples/").data
    assert replay["open"] is False and replay["end_reason"] == "stopped" and replay["count"] == session.sample_count
    assert replay["columns"][:3] == ["t", "cpu_percent", "mem_bytes"]
    times = [s["t"] for s in replay["samples"]]
    assert len(times) == session.sample_count and times == sorted(times) and len(set(times)) == len(times)
    assert all(t.endswith("Z") for t in times)
    elapsed = [s["elapsed"] for s in replay["samples"]]
    assert elapsed[0] == 0.0 and elapsed == sorted(elapsed) and elapsed[-1] > 0
    assert replay["samples"][0]["mem_bytes"] > 0 and replay["samples"][0]["pids"] >= 1
    page = admin_client.get(f"/api/v1/profiles/{session_id}/samples/?offset=1&limit=1").data
    assert [s["t"] for s in page["samples"]] == times[1:2] and page["next_offset"] == 2
    assert admin_client.get(f"/api/v1/profiles/{session_id}/samples/?limit=0").status_code == 400

    viewer = django_user_model.objects.create_user(f"pv{unique}", password="pw-viewer-123")
    outsider = django_user_model.objects.create_user(f"po{unique}", password="pw-outsider-1")
    assign_perm("containers.view_container", viewer, row)
    as_viewer, as_outsider = APIClient(), APIClient()
    as_viewer.force_authenticate(viewer)
    as_outsider.force_authenticate(outsider)
    assert as_viewer.get(f"/api/v1/profiles/{session_id}/samples/").data["count"] == session.sample_count
    assert as_outsider.get(f"/api/v1/profiles/{session_id}/samples/").status_code == 404
    assert as_outsider.get(f"/api/v1/profiles/{session_id}/export/?as=csv").status_code == 404
    assert as_viewer.delete(f"/api/v1/profiles/{session_id}/").status_code == 403  # only its recorder or an administrator
    csv_times = [line.split(",")[0] for line in admin_client.get(f"/api/v1/profiles/{session_id}/export/?as=csv").content.decode().splitlines()[1:]]
    assert csv_times == times


def _online(host):
    host.status = "online"
    host.save(update_fields=["status"])
    return host


def _proc_cpu_seconds(engine, name: str) -> float:
    """CPU time the kernel has charged to a container's main process (utime + stime)."""
    import os

    pid = engine.docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cli_stats(engine, *names: str) -> dict[str, dict]:
    out = engine.docker("stats", "--no-stream", "--format", "{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}", *names).stdout
    result = {}
    for line in out.splitlines():
        name, cpu, mem = line.split("\t")
        result[name] = {"cpu": float(cpu.rstrip("%")), "mem": _cli_bytes(mem.split("/")[0].strip())}
    return result


def _cli_bytes(text: str) -> float:
    units = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "kB": 1000, "MB": 1000**2, "GB": 1000**3}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(text)


class _CliStatsStream:
    """`docker stats` streaming, as a person watching it would: the CLI's own CPU % for each
    container, refreshed every second, collected over a window."""

    LINE = re.compile(r"(\S+) ([0-9.]+)%")

    def __init__(self, engine, *names: str):
        import subprocess
        import threading

        from testkit import testbed

        self.frames: dict[str, list[float]] = {name: [] for name in names}
        self._proc = subprocess.Popen([testbed.docker_bin(), "-H", engine.unix_url, "stats", "--format", "{{.Name}} {{.CPUPerc}}", *names],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=testbed._cli_env())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self._proc.stdout:
            # Each redraw (twice a second, a new figure each second) starts by clearing the screen.
            for name, cpu in self.LINE.findall(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line)):
                if name in self.frames:
                    self.frames[name].append(float(cpu))

    def stop(self):
        self._proc.terminate()
        self._proc.wait(10)
        self._reader.join(10)

    def mean(self, name: str) -> float:
        # The CLI's first figure for a container is measured against nothing before it: skip it.
        values = self.frames[name][1:]
        return sum(values) / len(values)


@pytest.mark.django_db
def test_cpu_percent_agrees_with_the_kernel_and_docker_for_a_busy_core_and_a_cpus_limit(admin_client, make_host, alpha, run_container,
                                                                                       sync_container, unique):
    """GIVEN a shell spinning on one core, one limited to half a core (--cpus 0.5) and an idle one
    WHEN two stats cycles run (the second measures CPU since the first)
    THEN each CPU % is what the kernel charged the process over that window (a whole busy core
    is 100 %, as `docker stats` shows it; the limited one is 50 % at most) and what the docker
    CLI showed, on average, while it watched the same window. On an idle machine the hog is at
    ~100 %; on a busy one it gets less CPU, and the kernel, docker and DockMon all say so."""
    from testkit import testing

    host = _online(make_host(alpha))
    hog = sync_container(host, run_container(alpha, f"cpu-{unique}", "sh", "-c", "while true; do :; done"))
    half = sync_container(host, run_container(alpha, f"half-{unique}", "sh", "-c", "while true; do :; done", extra=("--cpus", "0.5")))
    idle = sync_container(host, run_container(alpha, f"idle-{unique}", *TICKER))
    assert stats.collect_host(host.pk)["containers"] >= 3  # primes each container's CPU reading
    before = {row.name: _proc_cpu_seconds(alpha, row.name) for row in (hog, half)}
    t0 = time.monotonic()
    cli = _CliStatsStream(alpha, hog.name, half.name)
    try:
        # Long enough for several of the CLI's one-second figures.
        testing.wait_for(lambda: min(len(v) for v in cli.frames.values()) >= 6, timeout=60, message="docker stats figures")
        stats.collect_host(host.pk)
        elapsed = time.monotonic() - t0
        after = {row.name: _proc_cpu_seconds(alpha, row.name) for row in (hog, half)}
    finally:
        cli.stop()
    kernel = {name: (after[name] - before[name]) / elapsed * 100 for name in before}
    docker = {name: cli.mean(name) for name in before}
    _, data = stats.latest(host.pk)
    ours = {row.name: data[row.short_id][stats.CPU] for row in (hog, half, idle)}

    assert ours[hog.name] <= 110.0, ours  # one thread cannot use more than one core
    assert abs(ours[hog.name] - kernel[hog.name]) <= 15.0, (ours, kernel, docker)
    assert abs(ours[hog.name] - docker[hog.name]) <= 15.0, (ours, kernel, docker)
    assert ours[half.name] <= 60.0, (ours, kernel, docker)
    assert abs(ours[half.name] - kernel[half.name]) <= 15.0 and abs(ours[half.name] - docker[half.name]) <= 15.0, (ours, kernel, docker)
    assert ours[idle.name] < 10.0
    assert data[stats.HOST_KEY][stats.CPU] >= ours[hog.name] + ours[half.name] - 0.01
    points = admin_client.get(f"/api/v1/containers/{hog.key}/stats/?range=1h").data["points"]
    assert len(points) == 2 and points[-1]["cpu_percent"] == ours[hog.name] and points[-1]["t"].endswith("Z")
    host_points = admin_client.get(f"/api/v1/hosts/{host.pk}/stats/?range=1h").data["points"]
    assert host_points[-1]["cpu_percent"] >= points[-1]["cpu_percent"]
    assert admin_client.get(f"/api/v1/containers/{hog.key}/stats/?range=2y").status_code == 400


@pytest.mark.django_db
def test_memory_counts_allocations_but_not_page_cache_like_docker_stats(make_host, alpha, run_container, sync_container, unique):
    host = _online(make_host(alpha))
    hog = sync_container(host, run_container(
        alpha, f"mem-{unique}", "sh", "-c", 'dd if=/dev/zero of=/m/fill bs=1048576 count=64 2>/dev/null; trap "exit 0" TERM; while true; do sleep 1; done',
        extra=("--tmpfs", "/m:size=128m"),
    ))
    # 96 MiB written to an ordinary file of the container's own layer: page cache, not memory in use.
    cache = sync_container(host, run_container(
        alpha, f"cache-{unique}", "sh", "-c", 'dd if=/dev/zero of=/big bs=1048576 count=96 2>/dev/null; trap "exit 0" TERM; while true; do sleep 1; done',
    ))
    from testkit import testing

    for row, path in ((hog, "/m/fill"), (cache, "/big")):
        testing.wait_for(lambda row=row, path=path: alpha.docker("exec", row.name, "sh", "-c", f"test $(wc -c < {path}) -ge {64 << 20}",
                                                                  check=False).returncode == 0, message="the file written")
    stats.collect_host(host.pk)
    _, data = stats.latest(host.pk)
    cli = _cli_stats(alpha, hog.name, cache.name)
    sdk = alpha.sdk_client()
    raw_usage = sdk.api.stats(cache.container_id, stream=False)["memory_stats"]["usage"]

    used = data[hog.short_id][stats.MEM]
    assert abs(used - 64 * 1048576) <= 0.05 * 64 * 1048576, used  # tmpfs pages are memory in use
    assert data[hog.short_id][stats.MEM_LIMIT] > used
    cached = data[cache.short_id][stats.MEM]
    assert raw_usage >= 64 * 1048576, raw_usage  # the cgroup does hold the page cache...
    assert cached < 16 * 1048576, cached  # ...which is not counted as used, exactly as the CLI does
    # The CLI agrees that the cache is not in use (its reading comes a moment later, and a few MiB of
    # a nearly idle container's memory come and go in between, so compare the claim, not the bytes).
    assert cli[cache.name]["mem"] < 16 * 1048576, cli
    assert abs(used - cli[hog.name]["mem"]) <= 0.02 * used, (used, cli)


def _block_device_of(path: str) -> str | None:
    """/dev/NAME of the whole disk holding `path`, for a throttle rule; None when there is none."""
    import os

    st = os.stat(path)
    sys_dir = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    if not os.path.exists(sys_dir):
        return None
    real = os.path.realpath(sys_dir)
    if os.path.exists(os.path.join(real, "partition")):
        real = os.path.dirname(real)
    device = f"/dev/{os.path.basename(real)}"
    return device if os.path.exists(device) else None


@pytest.mark.django_db
def test_block_io_pids_and_network_agree_with_the_engine_and_the_kernel(make_host, alpha, run_container, sync_container, unique, testbed):
    host = _online(make_host(alpha))
    device = _block_device_of(alpha.data_root)
    if device is None:
        pytest.skip("the engine's data root is on no block device")
    # cgroup v1 counts a container's block I/O only where a throttle rule covers the device (a
    # generous one here). Direct I/O is charged to the container itself; buffered writes may be
    # written back by the kernel's flusher and charged to nobody, so they make no exact test.
    io = sync_container(host, run_container(
        alpha, f"blk-{unique}", "sh", "-c",
        "dd if=/dev/zero of=/direct bs=1048576 count=16 oflag=direct 2>/dev/null; "
        "dd if=/direct of=/dev/null bs=1048576 count=8 iflag=direct 2>/dev/null; touch /done; "
        'trap "exit 0" TERM; while true; do sleep 1; done',
        extra=("--device-write-bps", f"{device}:1gb", "--device-read-bps", f"{device}:1gb"),
    ))
    sleeps = sync_container(host, run_container(
        alpha, f"pids-{unique}", "sh", "-c", "for i in 1 2 3 4 5; do sleep 3600 & done; wait",
    ))
    nets = [f"sn-{unique}", f"sm-{unique}"]
    third = random.randint(0, 250)
    for offset, net in enumerate(nets):
        alpha.docker("network", "create", "--internal", "--subnet", f"198.{18 + offset}.{third}.0/24", net)
    try:
        # Internal networks in 198.18.0.0/15; the test sends nothing to them (what the counters
        # show is the kernel's own traffic on the container's two interfaces).
        netted = sync_container(host, run_container(alpha, f"net-{unique}", *TICKER, network=nets[0]))
        alpha.docker("network", "connect", nets[1], netted.name)
        from testkit import testing

        testing.wait_for(lambda: alpha.docker("exec", io.name, "test", "-e", "/done", check=False).returncode == 0, message="the dd runs")

        def counters():
            script = "cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth1/statistics/rx_bytes " \
                     "/sys/class/net/eth0/statistics/tx_bytes /sys/class/net/eth1/statistics/tx_bytes"
            rx0, rx1, tx0, tx1 = map(int, alpha.docker("exec", netted.name, "sh", "-c", script).stdout.split())
            return rx0 + rx1, tx0 + tx1

        net_before = counters()
        stats.collect_host(host.pk)
        net_after = counters()
        _, data = stats.latest(host.pk)
        raw = alpha.sdk_client().api.stats(io.container_id, stream=False)["blkio_stats"]["io_service_bytes_recursive"]
        engine_read = sum(e["value"] for e in raw if e["op"].lower() == "read")
        engine_write = sum(e["value"] for e in raw if e["op"].lower() == "write")

        point = data[io.short_id]
        assert 16 * 1048576 <= point[stats.BLK_WRITE] <= 17 * 1048576, point[stats.BLK_WRITE]
        assert 8 * 1048576 <= point[stats.BLK_READ] <= 9 * 1048576, point[stats.BLK_READ]
        assert abs(point[stats.BLK_WRITE] - engine_write) <= 1024 and abs(point[stats.BLK_READ] - engine_read) <= 1024
        processes = alpha.docker("top", sleeps.name).stdout.strip().splitlines()[1:]
        assert data[sleeps.short_id][stats.PIDS] == len(processes) == 6  # the shell and its five sleeps
        rx, tx = data[netted.short_id][stats.NET_RX], data[netted.short_id][stats.NET_TX]
        assert net_before[0] - 1024 <= rx <= net_after[0] + 1024, (net_before, rx, net_after)
        assert net_before[1] - 1024 <= tx <= net_after[1] + 1024, (net_before, tx, net_after)
        assert data[io.short_id][stats.NET_RX] == 0 and data[io.short_id][stats.NET_TX] == 0  # --network none: no interface counted
    finally:
        alpha.docker("rm", "-f", f"net-{unique}", check=False)
        for net in nets:
            alpha.docker("network", "rm", net, check=False)


def _raw(host, ts, **points):
    # Raw rows keep sizes in KiB: these become 100, 300... KiB (×1024 bytes) when read.
    data = {short: [v, m, 1000, rx, 0, 0, 0, 1] for short, (v, m, rx) in points.items()}
    StatsBatch.objects.create(host=host, tier=StatsTier.RAW, ts=ts, data=data)


@pytest.mark.django_db
def test_rollups_keep_min_avg_max_across_tiers_and_retention_prunes(make_host, alpha, settings):
    host = make_host(alpha)
    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    # Two 5-minute windows in one hour: CPU 10/30 then 50/90; memory 100/300 then 500/900.
    _raw(host, base, c1=(10.0, 100, 1))
    _raw(host, base + timedelta(seconds=10), c1=(30.0, 300, 2))
    _raw(host, base + timedelta(minutes=5), c1=(50.0, 500, 3))
    _raw(host, base + timedelta(minutes=5, seconds=10), c1=(90.0, 900, 4))
    now = base + timedelta(hours=2)
    assert stats.rollup_host(host.pk, StatsTier.FIVE_MINUTES, now=now) == 2
    assert stats.rollup_host(host.pk, StatsTier.FIVE_MINUTES, now=now) == 0  # idempotent
    first = StatsBatch.objects.get(host=host, tier=StatsTier.FIVE_MINUTES, ts=base).data["c1"]
    assert first[stats.CPU] == 20.0 and first[stats.CPU_MIN] == 10.0 and first[stats.CPU_MAX] == 30.0
    assert first[stats.MEM] == 200 * 1024 and first[stats.NET_RX] == 2 * 1024 and first[stats.COUNT] == 2
    assert stats.rollup_host(host.pk, StatsTier.HOUR, now=now) == 1
    hour = StatsBatch.objects.get(host=host, tier=StatsTier.HOUR, ts=base).data["c1"]
    assert hour[stats.CPU] == 45.0 and hour[stats.CPU_MIN] == 10.0 and hour[stats.CPU_MAX] == 90.0
    assert (hour[stats.MEM], hour[stats.MEM_MIN], hour[stats.MEM_MAX]) == (450 * 1024, 100 * 1024, 900 * 1024)
    assert hour[stats.NET_RX] == 4 * 1024 and hour[stats.COUNT] == 4
    # A 30-day query uses the hour tier, then finer tiers for anything newer.
    series = stats.series(host.pk, "c1", "30d", now=now)
    assert [p["cpu_percent"] for p in series] == [45.0]
    settings.DOCKMON_STATS_RAW_HOURS = 1
    settings.DOCKMON_STATS_5M_DAYS = 1
    settings.DOCKMON_STATS_1H_DAYS = 90
    assert stats.prune(now=now) == 4  # raw rows older than an hour go; rollups stay
    assert StatsBatch.objects.filter(host=host, tier=StatsTier.RAW).count() == 0
    assert stats.prune(now=now + timedelta(days=2)) == 2
    assert StatsBatch.objects.filter(host=host, tier=StatsTier.HOUR).count() == 1


@pytest.mark.django_db
def test_disk_usage_is_recorded_and_served(admin_client, make_host, alpha):
    from containers.services import record_disk_usage

    host = make_host(alpha)
    row = record_disk_usage(host)
    assert row.images_count >= 1 and row.images_size > 0
    data = admin_client.get(f"/api/v1/hosts/{host.pk}/disk-usage/").data["results"]
    assert data[0]["images_count"] == row.images_count and data[0]["total_size"] >= row.images_size
    assert admin_client.get(f"/api/v1/hosts/{host.pk}/disk-usage/?limit=0").status_code == 400


@pytest.mark.django_db
def test_metrics_parse_and_are_protected(admin, make_host, alpha, run_container, sync_container, unique, settings):
    host = make_host(alpha)
    host.status = "online"
    host.save()
    row = sync_container(host, run_container(alpha, f"metrics-{unique}", *TICKER))
    stats.collect_host(host.pk)
    assert APIClient().get("/metrics").status_code == 401
    _, token = APIToken.issue(admin)
    response = APIClient().get("/metrics", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    running = {s.labels["key"]: s.value for s in families["dockmon_container_running"].samples}
    assert running[row.key] == 1.0
    assert any(s.labels["key"] == row.key for s in families["dockmon_container_cpu_percent"].samples)
    assert {s.labels["host"]: s.value for s in families["dockmon_host_up"].samples}[str(host.pk)] == 1.0
    assert "dockmon_events" in families
    settings.DOCKMON_METRICS_ALLOW = [__import__("ipaddress").ip_network("127.0.0.0/8")]
    assert APIClient().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_stats_samples_reach_subscribed_clients_only_for_what_they_may_see(django_user_model, admin, make_host, alpha, run_container, sync_container, unique):
    from guardian.shortcuts import assign_perm

    host = make_host(alpha)
    host.status = "online"
    host.save()
    seen = sync_container(host, run_container(alpha, f"seen-{unique}", *TICKER))
    unseen = sync_container(host, run_container(alpha, f"unseen-{unique}", *TICKER))
    user = django_user_model.objects.create_user(f"s{unique}", password="pw-stats-1234")
    assign_perm("containers.view_container", user, seen)
    _, user_token = APIToken.issue(user)
    _, admin_token = APIToken.issue(admin)

    async def scenario():
        limited, full, quiet = _communicator(user_token), _communicator(admin_token), _communicator(admin_token)
        for communicator in (limited, full, quiet):
            await communicator.connect()
        await limited.send_json_to({"action": "stats.subscribe", "keys": [seen.key, unseen.key]})
        reply = await _receive_until(limited, lambda m: m["type"] == "stats.subscribed")
        assert reply["data"]["keys"] == [seen.key]
        await full.send_json_to({"action": "stats.subscribe", "hosts": [str(host.pk)]})
        await _receive_until(full, lambda m: m["type"] == "stats.subscribed")
        from asgiref.sync import sync_to_async

        await sync_to_async(stats.collect_host)(host.pk)
        mine = await _receive_until(limited, lambda m: m["type"] == "stats.sample")
        assert [s["key"] for s in mine["data"]["samples"]] == [seen.key]
        assert "host_totals" not in mine["data"]  # a sum over containers this user may not see
        everything = await _receive_until(full, lambda m: m["type"] == "stats.sample")
        assert {seen.key, unseen.key} <= {s["key"] for s in everything["data"]["samples"]}
        assert everything["data"]["host_totals"]["containers"] >= 2
        # A client that did not subscribe gets no stats at all.
        while not await quiet.receive_nothing(timeout=0.5):
            message = json.loads(await quiet.receive_from())
            assert message["type"] != "stats.sample"
        for communicator in (limited, full, quiet):
            await communicator.disconnect(timeout=10)

    async_to_sync(scenario)()
