"""Pure conversions in containers.engine: URLs, timestamps, list summaries."""

from datetime import UTC, datetime

import pytest

from containers import engine
from containers.engine import facts as engine_facts
from containers.engine import stats as engine_stats


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("tcp://127.0.0.1:2375", "tcp://127.0.0.1:2375"),
        ("tcp://example.internal", "tcp://example.internal:2375"),
        ("  ssh://deploy@box:2222 ", "ssh://deploy@box:2222"),
    ],
)
def test_it_normalizes_supported_urls(raw, expected):
    assert engine.normalize_url(raw) == expected


def test_it_defaults_tls_urls_to_2376():
    assert engine.normalize_url("tcp://10.0.0.5", tls=True) == "tcp://10.0.0.5:2376"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "Enter the engine URL"),
        ("http://127.0.0.1:2375", "Unsupported scheme"),
        ("docker.sock", "Unsupported scheme"),
        ("unix://relative/path", "absolute socket path"),
        ("tcp://127.0.0.1:99999", "port"),
        ("tcp://127.0.0.1:2375/v1.41", "path"),
        ("tcp://:2375", "host name"),
    ],
)
def test_it_rejects_bad_urls_with_a_reason(raw, fragment):
    with pytest.raises(ValueError, match=fragment):
        engine.normalize_url(raw)


def test_engine_timestamps_with_offsets_are_converted_not_relabelled():
    assert engine_facts.parse_time("2026-11-22T12:00:00.123456789+02:00") == datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    assert engine_facts.parse_time("2026-11-22T10:00:00Z") == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert engine_facts.parse_time("0001-01-01T00:00:00Z") is None
    assert engine_facts.parse_time(1_700_000_000) == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_list_summary_yields_health_and_exit_code():
    facts = engine_facts.facts_from_summary(
        {
            "Id": "a" * 64,
            "Names": ["/web"],
            "Image": "nginx:1.25",
            "ImageID": "sha256:" + "b" * 64,
            "State": "running",
            "Status": "Up 3 minutes (unhealthy)",
            "Labels": {"com.docker.compose.project": "shop"},
            "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "127.0.0.1"}],
            "Created": 1_700_000_000,
        }
    )
    assert (facts.name, facts.health, facts.state, facts.complete) == ("web", "unhealthy", "running", False)
    assert facts.ports == [{"private_port": 80, "type": "tcp", "public_port": 8080, "ip": "127.0.0.1"}]
    exited = engine_facts.facts_from_summary({"Id": "c" * 64, "Names": ["/job"], "State": "exited", "Status": "Exited (137) 2 hours ago"})
    assert exited.exit_code == 137


# ---------------------------------------------------------------------------
# Stats documents as dockerd 20.10 sends them (GET /containers/{id}/stats?stream=false), one per
# cgroup version. compute_stats must give the figures `docker stats` prints for the same document.
# ---------------------------------------------------------------------------
MIB = 1024 * 1024


def _v1_doc(*, cpu_ns: int, system_ns: int, ncpu: int = 4, online: int | None = None, usage: int = 100 * MIB,
            inactive_file: int = 60 * MIB) -> dict:
    """cgroup v1: per-CPU usage, `total_*` memory keys, capitalised blkio ops, one entry per device."""
    cpu = {
        "cpu_usage": {"total_usage": 5_000_000_000 + cpu_ns, "percpu_usage": [1] * ncpu, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "system_cpu_usage": 900_000_000_000 + system_ns,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }
    pre = {
        "cpu_usage": {"total_usage": 5_000_000_000, "percpu_usage": [1] * ncpu, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "system_cpu_usage": 900_000_000_000,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }
    if online is not None:
        cpu["online_cpus"] = pre["online_cpus"] = online
    return {
        "read": "2026-11-22T10:00:01.5+00:00",
        "preread": "2026-11-22T10:00:00.5+00:00",
        "pids_stats": {"current": 7},
        "cpu_stats": cpu,
        "precpu_stats": pre,
        "memory_stats": {
            "usage": usage,
            "max_usage": usage + MIB,
            # `cache` counts every page-cache page; docker subtracts only the inactive file pages.
            "stats": {"cache": 70 * MIB, "total_cache": 70 * MIB, "inactive_file": inactive_file, "total_inactive_file": inactive_file,
                      "active_file": 10 * MIB, "total_active_file": 10 * MIB, "rss": 30 * MIB, "total_rss": 30 * MIB},
            "limit": 512 * MIB,
        },
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 254, "minor": 0, "op": "Read", "value": 4096},
            {"major": 254, "minor": 0, "op": "Write", "value": 8 * MIB},
            {"major": 254, "minor": 0, "op": "Sync", "value": 8 * MIB + 4096},
            {"major": 254, "minor": 0, "op": "Total", "value": 8 * MIB + 4096},
            {"major": 254, "minor": 16, "op": "Read", "value": 1000},
            {"major": 254, "minor": 16, "op": "Write", "value": 2000},
            {"major": 254, "minor": 16, "op": "Total", "value": 3000},
        ]},
        "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 700}, "eth1": {"rx_bytes": 500, "tx_bytes": 300}},
    }


def _v2_doc(*, cpu_ns: int, system_ns: int, online: int = 2, usage: int = 100 * MIB, inactive_file: int = 60 * MIB) -> dict:
    """cgroup v2: no per-CPU usage (online_cpus only), unprefixed memory keys, lower-case blkio ops."""
    return {
        "read": "2026-11-22T10:00:01Z",
        "pids_stats": {"current": 3, "limit": 100},
        "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000 + cpu_ns}, "system_cpu_usage": 400_000_000_000 + system_ns,
                      "online_cpus": online},
        "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}, "system_cpu_usage": 400_000_000_000, "online_cpus": online},
        "memory_stats": {
            "usage": usage,
            "stats": {"anon": 30 * MIB, "file": 70 * MIB, "active_file": 10 * MIB, "inactive_file": inactive_file},
            "limit": 256 * MIB,
        },
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "read", "value": 12_288},
            {"major": 8, "minor": 0, "op": "write", "value": 3 * MIB},
        ]},
        "networks": {"eth0": {"rx_bytes": 42, "tx_bytes": 24}},
    }


def test_cgroup_v1_stats_exclude_inactive_page_cache_and_count_cpus_from_percpu_usage():
    # Old engines send no online_cpus: the CPU count is the length of percpu_usage (4 here). One
    # second of one core's work in a one-second window of 4 CPUs is 100 % (a whole core).
    sample = engine_stats.compute_stats("c" * 64, _v1_doc(cpu_ns=1_000_000_000, system_ns=4_000_000_000))
    assert sample.cpu_percent == 100.0
    assert sample.mem_bytes == 40 * MIB  # usage 100 MiB minus 60 MiB of inactive page cache (not `cache`: 70)
    assert sample.mem_limit == 512 * MIB
    assert (sample.blk_read, sample.blk_write) == (4096 + 1000, 8 * MIB + 2000)  # Read/Write of both devices; Sync/Total ignored
    assert (sample.net_rx, sample.net_tx) == (2000, 1000)  # every interface summed
    assert sample.pids == 7
    assert sample.ts == datetime(2026, 11, 22, 10, 0, 1, 500000, tzinfo=UTC)
    # online_cpus, when sent, wins over percpu_usage (CPUs can be offline).
    assert engine_stats.compute_stats("c" * 64, _v1_doc(cpu_ns=1_000_000_000, system_ns=4_000_000_000, ncpu=8, online=4)).cpu_percent == 100.0


def test_cgroup_v2_stats_exclude_inactive_file_and_use_online_cpus():
    # Two cores: 1.5 s of CPU in a 1-second window (system delta 2 s over 2 CPUs) is 150 %.
    sample = engine_stats.compute_stats("d" * 64, _v2_doc(cpu_ns=1_500_000_000, system_ns=2_000_000_000))
    assert sample.cpu_percent == 150.0
    assert sample.mem_bytes == 40 * MIB and sample.mem_limit == 256 * MIB
    assert (sample.blk_read, sample.blk_write) == (12_288, 3 * MIB)
    assert (sample.net_rx, sample.net_tx, sample.pids) == (42, 24, 3)


def test_a_cpus_limit_shows_as_a_share_of_one_core_like_docker_stats():
    # `--cpus 0.5` on a 4-CPU host: the container gets half a core. docker stats shows 50 % (of one
    # core), not 100 % of its limit nor 12.5 % of the machine.
    sample = engine_stats.compute_stats("e" * 64, _v2_doc(cpu_ns=500_000_000, system_ns=4_000_000_000, online=4))
    assert sample.cpu_percent == 50.0
    v1 = _v1_doc(cpu_ns=500_000_000, system_ns=4_000_000_000, online=4)
    v1["cpu_stats"]["throttling_data"] = {"periods": 10, "throttled_periods": 10, "throttled_time": 500_000_000}
    assert engine_stats.compute_stats("e" * 64, v1).cpu_percent == 50.0
    # Several busy threads on a multi-core host go beyond 100 %: 3 cores' worth of 4.
    assert engine_stats.compute_stats("e" * 64, _v2_doc(cpu_ns=3_000_000_000, system_ns=4_000_000_000, online=4)).cpu_percent == 75.0 * 4


def test_odd_stats_documents_give_zeros_not_errors():
    # The first frame of a stream has no precpu_stats; a restarted container's counter starts
    # again below the previous reading; a stopped container sends almost nothing.
    first = _v2_doc(cpu_ns=1_000_000_000, system_ns=2_000_000_000)
    first["precpu_stats"] = {"cpu_usage": {"total_usage": 0}}
    assert engine_stats.compute_stats("f" * 64, first).cpu_percent == 0.0
    reset = _v2_doc(cpu_ns=1_000_000_000, system_ns=2_000_000_000)
    reset["precpu_stats"]["cpu_usage"]["total_usage"] = 10**12
    assert engine_stats.compute_stats("f" * 64, reset).cpu_percent == 0.0
    # Inactive file pages beyond the usage (a racy read) are not subtracted into a negative number.
    odd = _v1_doc(cpu_ns=0, system_ns=1, usage=10 * MIB, inactive_file=20 * MIB)
    odd["memory_stats"]["stats"]["inactive_file"] = 20 * MIB
    assert engine_stats.compute_stats("f" * 64, odd).mem_bytes == 10 * MIB
    bare = engine_stats.compute_stats("f" * 64, {"read": "0001-01-01T00:00:00Z", "pids_stats": {}, "memory_stats": {}, "blkio_stats": {}})
    assert (bare.cpu_percent, bare.mem_bytes, bare.mem_limit, bare.net_rx, bare.blk_write, bare.pids) == (0.0, 0, 0, 0, 0, 0)
    assert bare.ts.tzinfo is not None
