"""Container stats: concurrent collection, tiered storage with rollups, range queries.

Collection asks the engine for every running container at once (each stats call waits for the
engine's collector, which ticks about once a second), writes one StatsBatch row per host per
cycle and publishes the samples to clients that subscribed to that host's stats. After the
first cycle the calls are one-shot (one tick instead of two) and CPU % is measured from the
previous cycle's counters, i.e. averaged over the collection interval.
Rollups turn raw rows into 5-minute rows and those into 1-hour rows, keeping min/avg/max.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from containers import bus, engine
from containers.choices import EventCategory, HostStatus, StatsTier
from containers.engine import stats as engine_stats
from containers.models import Container, DockerHost, StatsBatch
from dockmon_site import realtime

logger = logging.getLogger(__name__)

# Positions in a stored point (see StatsBatch).
CPU, CPU_MIN, CPU_MAX, MEM, MEM_MIN, MEM_MAX, MEM_LIMIT, NET_RX, NET_TX, BLK_READ, BLK_WRITE, PIDS, COUNT = range(13)
HOST_KEY = "_host"
TIER_SECONDS = {StatsTier.FIVE_MINUTES: 300, StatsTier.HOUR: 3600}
# range → (tier for the bulk of it, span)
RANGES = {
    "1h": (StatsTier.RAW, timedelta(hours=1)),
    "24h": (StatsTier.FIVE_MINUTES, timedelta(hours=24)),
    "7d": (StatsTier.FIVE_MINUTES, timedelta(days=7)),
    "30d": (StatsTier.HOUR, timedelta(days=30)),
}
_FINER = {StatsTier.HOUR: StatsTier.FIVE_MINUTES, StatsTier.FIVE_MINUTES: StatsTier.RAW}


def _kib(value: int) -> int:
    return (int(value) + 512) // 1024


def _point(sample: engine_stats.StatsSample) -> list:
    """A raw point is short: one value per metric (min = avg = max for one sample) and byte
    counts in KiB (three digits fewer each). Raw rows are most of the stats storage."""
    return [round(sample.cpu_percent, 2), _kib(sample.mem_bytes), _kib(sample.mem_limit), _kib(sample.net_rx), _kib(sample.net_tx),
            _kib(sample.blk_read), _kib(sample.blk_write), sample.pids]


def full(point: list) -> list:
    """Any stored point (raw or rolled up) in the 13-value rollup shape, sizes in bytes."""
    if len(point) == 13:
        return point
    cpu, mem, limit, rx, tx, read, write, pids = point
    mem, limit, rx, tx, read, write = (v * 1024 for v in (mem, limit, rx, tx, read, write))
    return [cpu, cpu, cpu, mem, mem, mem, limit, rx, tx, read, write, pids, 1]


def _host_total(points: list[list]) -> list:
    total = [0.0] * 13
    for p in map(full, points):
        for i in (CPU, MEM, MEM_LIMIT, NET_RX, NET_TX, BLK_READ, BLK_WRITE, PIDS):
            total[i] += p[i]
    total[CPU] = round(total[CPU], 3)
    total[CPU_MIN] = total[CPU_MAX] = total[CPU]
    total[MEM_MIN] = total[MEM_MAX] = total[MEM]
    total[COUNT] = len(points)
    return total


def sample_payload(key: str, point: list) -> dict:
    return {
        "key": key,
        "cpu_percent": point[CPU],
        "mem_bytes": point[MEM],
        "mem_limit": point[MEM_LIMIT],
        "net_rx": point[NET_RX],
        "net_tx": point[NET_TX],
        "blk_read": point[BLK_READ],
        "blk_write": point[BLK_WRITE],
        "pids": point[PIDS],
    }


# The CPU counters of each container's last sample, so that the next cycle can ask the engine
# for a one-shot document (one collector tick instead of two) and still compute CPU % over the
# time since. They live in the shared cache: the next cycle may run in another worker.
_CPU_KEY = "dockmon:stats:cpu:{host}:{container}"


def _previous_ttl() -> int:
    # Beyond a few missed cycles the old reading is dropped and the full (two-tick) call, which
    # measures over the engine's last second, is used again.
    return max(30, 3 * settings.DOCKMON_STATS_INTERVAL_SECONDS)


def _load_previous(host_id, ids: list[str]) -> dict[str, dict]:
    keys = {_CPU_KEY.format(host=host_id, container=cid): cid for cid in ids}
    try:
        found = cache.get_many(list(keys))
    except Exception:  # no cache (Redis down): every call takes the full path this cycle
        logger.warning("stats: previous CPU readings unavailable", exc_info=True)
        return {}
    return {keys[key]: value for key, value in found.items()}


def _store_previous(host_id, readings: dict[str, dict]) -> None:
    try:
        cache.set_many({_CPU_KEY.format(host=host_id, container=cid): cpu for cid, cpu in readings.items()}, timeout=_previous_ttl())
    except Exception:
        logger.warning("stats: previous CPU readings not stored", exc_info=True)


def _cpu_reading(doc: dict) -> dict | None:
    cpu = doc.get("cpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage")
    if not total or not cpu.get("system_cpu_usage"):
        return None
    return {"cpu_usage": {"total_usage": total}, "system_cpu_usage": cpu["system_cpu_usage"], "online_cpus": cpu.get("online_cpus") or 0}


def _sample(client, container_id: str, previous: dict | None) -> tuple[engine_stats.StatsSample, dict | None] | None:
    """One container's sample: one-shot when the last cycle left its CPU counters (CPU % over
    the time since then), else the engine's own two-tick measurement."""
    try:
        doc = engine_stats.container_stats_doc(client, container_id, one_shot=previous is not None)
    except engine.EngineError as exc:
        # A container that stopped between the list and its stats call is normal.
        logger.debug("stats for %s failed: %s", container_id[:12], exc)
        return None
    if previous is not None:
        doc["precpu_stats"] = previous
    return engine_stats.compute_stats(container_id, doc), _cpu_reading(doc)


def collect_host(host_id, *, concurrency: int | None = None) -> dict:
    """One stats cycle for one host. Returns {"containers": n, "errors": n}."""
    host = DockerHost.objects.filter(pk=host_id, enabled=True).first()
    if host is None or host.status != HostStatus.ONLINE:
        return {"containers": 0, "errors": 0, "skipped": True}
    concurrency = concurrency or settings.DOCKMON_STATS_CONCURRENCY
    started = timezone.now().replace(microsecond=0)
    client = engine.client_for_host(host)
    errors = 0
    readings: dict[str, dict] = {}
    try:
        ids = engine_stats.running_container_ids(client)
        samples: list[engine_stats.StatsSample] = []
        if ids:
            previous = _load_previous(host.pk, ids)
            with ThreadPoolExecutor(max_workers=min(concurrency, len(ids)), thread_name_prefix="stats") as pool:
                for cid, result in zip(ids, pool.map(lambda cid: _sample(client, cid, previous.get(cid)), ids), strict=True):
                    if result is None:
                        errors += 1
                        continue
                    samples.append(result[0])
                    if result[1] is not None:
                        readings[cid] = result[1]
    finally:
        client.close()
    if readings:
        _store_previous(host.pk, readings)
    data = {s.container_id[:12]: _point(s) for s in samples}
    data[HOST_KEY] = _host_total(list(data.values()))
    StatsBatch.objects.bulk_create([StatsBatch(host=host, tier=StatsTier.RAW, ts=started, data=data)], ignore_conflicts=True)
    prefix = f"{host.pk}:"
    bus.emit(
        "stats.sample",
        category=EventCategory.CONTAINER,
        host=host.pk,
        persist=False,
        ts=started,
        group=realtime.stats_group(host.pk),
        data={
            "host": str(host.pk),
            "t": started,
            "samples": [sample_payload(prefix + short, full(point)) for short, point in data.items() if short != HOST_KEY],
            "host_totals": sample_payload("", data[HOST_KEY]) | {"containers": len(samples)},
        },
    )
    return {"containers": len(samples), "errors": errors}


# ---------------------------------------------------------------------------
# Rollups
# ---------------------------------------------------------------------------
def merge(points: list[list]) -> list:
    """Combine points (raw or rolled up) into one: sample-weighted average, min of mins,
    max of maxes, and the last value of counters and limits."""
    points = [full(p) for p in points]
    weights = [p[COUNT] or 1 for p in points]
    total = sum(weights)
    last = points[-1]
    return [
        round(sum(p[CPU] * w for p, w in zip(points, weights, strict=True)) / total, 3),
        min(p[CPU_MIN] for p in points),
        max(p[CPU_MAX] for p in points),
        int(sum(p[MEM] * w for p, w in zip(points, weights, strict=True)) / total),
        min(p[MEM_MIN] for p in points),
        max(p[MEM_MAX] for p in points),
        last[MEM_LIMIT], last[NET_RX], last[NET_TX], last[BLK_READ], last[BLK_WRITE], last[PIDS],
        total,
    ]


def _window_start(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def rollup_host(host_id, tier: str, *, now: datetime | None = None) -> int:
    """Write every missing, complete `tier` window of one host from the next finer tier."""
    now = now or timezone.now()
    seconds = TIER_SECONDS[tier]
    source = _FINER[tier]
    last = StatsBatch.objects.filter(host_id=host_id, tier=tier).order_by("-ts").values_list("ts", flat=True).first()
    first_source = StatsBatch.objects.filter(host_id=host_id, tier=source)
    if last is not None:
        first_source = first_source.filter(ts__gte=last + timedelta(seconds=seconds))
    first = first_source.order_by("ts").values_list("ts", flat=True).first()
    if first is None:
        return 0
    window = _window_start(first, seconds)
    end_of_complete = _window_start(now, seconds)
    written = 0
    while window < end_of_complete:
        upper = window + timedelta(seconds=seconds)
        rows = list(StatsBatch.objects.filter(host_id=host_id, tier=source, ts__gte=window, ts__lt=upper).order_by("ts").values_list("data", flat=True))
        if rows:
            per_key: dict[str, list] = {}
            for data in rows:
                for key, point in data.items():
                    per_key.setdefault(key, []).append(point)
            merged = {key: merge(points) for key, points in per_key.items()}
            StatsBatch.objects.bulk_create([StatsBatch(host_id=host_id, tier=tier, ts=window, data=merged)], ignore_conflicts=True)
            written += 1
        window = upper
    return written


def rollup_all(now: datetime | None = None) -> dict:
    written = {StatsTier.FIVE_MINUTES: 0, StatsTier.HOUR: 0}
    for host_id in DockerHost.objects.values_list("pk", flat=True):
        for tier in (StatsTier.FIVE_MINUTES, StatsTier.HOUR):
            written[tier] += rollup_host(host_id, tier, now=now)
    return written


def prune(now: datetime | None = None) -> int:
    now = now or timezone.now()
    keep = {
        StatsTier.RAW: timedelta(hours=settings.DOCKMON_STATS_RAW_HOURS),
        StatsTier.FIVE_MINUTES: timedelta(days=settings.DOCKMON_STATS_5M_DAYS),
        StatsTier.HOUR: timedelta(days=settings.DOCKMON_STATS_1H_DAYS),
    }
    deleted = 0
    for tier, age in keep.items():
        count, _ = StatsBatch.objects.filter(tier=tier, ts__lt=now - age).delete()
        deleted += count
    return deleted


# ---------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------
def _as_point(ts: datetime, p: list) -> dict:
    return {
        "t": ts, "cpu_percent": p[CPU], "cpu_min": p[CPU_MIN], "cpu_max": p[CPU_MAX], "mem_bytes": p[MEM],
        "mem_min": p[MEM_MIN], "mem_max": p[MEM_MAX], "mem_limit": p[MEM_LIMIT], "net_rx": p[NET_RX],
        "net_tx": p[NET_TX], "blk_read": p[BLK_READ], "blk_write": p[BLK_WRITE], "pids": p[PIDS], "samples": p[COUNT],
    }


def _series(host_id, key: str, tier: str, since: datetime) -> list[tuple[datetime, list]]:
    rows = (
        StatsBatch.objects.filter(host_id=host_id, tier=tier, ts__gte=since)
        .annotate(point=KeyTransform(key, "data"))
        .order_by("ts")
        .values_list("ts", "point")
    )
    return [(ts, full(point)) for ts, point in rows if point]


def series(host_id, key: str, range_name: str, *, now: datetime | None = None) -> list[dict]:
    """Points for one container (key = short id) or a host (key = "_host") over a range.

    The bulk comes from the range's tier; the part after its newest point comes from finer
    tiers, so the most recent minutes show up before a rollup has run.
    """
    tier, span = RANGES[range_name]
    since = (now or timezone.now()) - span
    points: list[tuple[datetime, list]] = []
    while True:
        found = _series(host_id, key, tier, since)
        points.extend(found)
        if tier not in _FINER:
            break
        if found:
            since = found[-1][0] + timedelta(seconds=TIER_SECONDS[tier])
        tier = _FINER[tier]
    return [_as_point(ts, p) for ts, p in points]


def container_series(container: Container, range_name: str) -> list[dict]:
    return series(container.host_id, container.short_id, range_name)


def host_series(host: DockerHost, range_name: str) -> list[dict]:
    return series(host.pk, HOST_KEY, range_name)


def latest(host_id) -> tuple[datetime | None, dict]:
    """The newest raw row of a host: {short id: full point}."""
    row = StatsBatch.objects.filter(host_id=host_id, tier=StatsTier.RAW).order_by("-ts").values_list("ts", "data").first()
    if not row:
        return None, {}
    return row[0], {key: full(point) for key, point in row[1].items()}
