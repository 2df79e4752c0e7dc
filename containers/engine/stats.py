"""Resource numbers from the engine: per-container stats (as `docker stats` shows them) and disk usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from containers.engine.errors import ENGINE_FAILURES, wrap_error
from containers.engine.facts import parse_time


@dataclass
class StatsSample:
    container_id: str
    ts: datetime
    cpu_percent: float
    mem_bytes: int
    mem_limit: int
    net_rx: int
    net_tx: int
    blk_read: int
    blk_write: int
    pids: int


def compute_stats(container_id: str, data: dict) -> StatsSample:
    """The numbers `docker stats` shows, from one stats document (with precpu_stats)."""
    cpu = data.get("cpu_stats") or {}
    pre = data.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    # No previous reading (a stream's first frame, a one-shot call): the deltas would be the
    # container's whole lifetime, not the recent interval `docker stats` shows. Report 0.
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0) if pre.get("system_cpu_usage") else 0
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_percent = (cpu_delta / system_delta) * online * 100.0 if cpu_delta > 0 and system_delta > 0 else 0.0

    memory = data.get("memory_stats") or {}
    usage = memory.get("usage") or 0
    mstats = memory.get("stats") or {}
    # Like the docker CLI: page cache that can be dropped is not "used" memory.
    if "total_inactive_file" in mstats and mstats["total_inactive_file"] < usage:  # cgroup v1
        usage -= mstats["total_inactive_file"]
    elif "inactive_file" in mstats and mstats["inactive_file"] < usage:  # cgroup v2
        usage -= mstats["inactive_file"]

    rx = tx = 0
    for net in (data.get("networks") or {}).values():
        rx += net.get("rx_bytes", 0)
        tx += net.get("tx_bytes", 0)
    read = write = 0
    for entry in ((data.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []):
        op = (entry.get("op") or "").lower()
        if op == "read":
            read += entry.get("value", 0)
        elif op == "write":
            write += entry.get("value", 0)
    return StatsSample(
        container_id=container_id,
        ts=parse_time(data.get("read")) or datetime.now(UTC),
        cpu_percent=round(cpu_percent, 3),
        mem_bytes=int(usage),
        mem_limit=int(memory.get("limit") or 0),
        net_rx=rx,
        net_tx=tx,
        blk_read=read,
        blk_write=write,
        pids=int((data.get("pids_stats") or {}).get("current") or 0),
    )


def container_stats(client, container_id: str) -> StatsSample:
    """One sample. The engine waits ~1 s to measure CPU over an interval, so call these concurrently."""
    try:
        data = client.api.stats(container_id, stream=False)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    return compute_stats(container_id, data)


def container_stats_doc(client, container_id: str, *, one_shot: bool = False) -> dict:
    """One raw stats document. With one_shot the engine answers from its next collector tick
    without first waiting for a priming one (about half the wait), but sends no precpu_stats:
    the caller supplies the previous reading for CPU % (containers.stats does)."""
    try:
        return client.api.stats(container_id, stream=False, one_shot=one_shot)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def stats_stream(client, container_id: str):
    """A blocking stream of decoded stats documents, about one a second; close() it to stop."""
    try:
        return client.api.stats(container_id, stream=True, decode=True)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def running_container_ids(client) -> list[str]:
    try:
        return [item["Id"] for item in client.api.containers(filters={"status": "running"})]
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def disk_usage(client) -> dict:
    """`docker system df` in numbers: sizes in bytes and counts, with what is reclaimable."""
    try:
        data = client.api.df()
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    images = data.get("Images") or []
    containers = data.get("Containers") or []
    volumes = data.get("Volumes") or []
    cache = data.get("BuildCache") or []
    return {
        "images_count": len(images),
        "images_size": int(data.get("LayersSize") or 0),
        "images_reclaimable": sum(int(i.get("Size") or 0) for i in images if not i.get("Containers")),
        "containers_count": len(containers),
        "containers_size": sum(int(c.get("SizeRw") or 0) for c in containers),
        "containers_reclaimable": sum(int(c.get("SizeRw") or 0) for c in containers if c.get("State") != "running"),
        "volumes_count": len(volumes),
        "volumes_size": sum(max(0, int((v.get("UsageData") or {}).get("Size") or 0)) for v in volumes),
        "volumes_reclaimable": sum(
            max(0, int((v.get("UsageData") or {}).get("Size") or 0)) for v in volumes if not (v.get("UsageData") or {}).get("RefCount")
        ),
        "build_cache_count": len(cache),
        "build_cache_size": sum(int(c.get("Size") or 0) for c in cache),
        "build_cache_reclaimable": sum(int(c.get("Size") or 0) for c in cache if not c.get("InUse")),
    }
