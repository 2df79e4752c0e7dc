"""Stats storage after 30 simulated days: 1,000 containers on 10 hosts, a sample every 10 s (issue 4).

Builds the steady state the product's own retention leaves after 30 days (defaults: raw 24 h,
5-minute rollups 7 days, 1-hour rollups 90 days — so 30 days of 1-hour rows), in the product's
row format (one StatsBatch row per host per cycle/window, `containers.stats._point` raw points,
`_host_total` host points, 13-value rollup points):

- the last 24 h of raw rows: simulated cycle by cycle with varying values (CPU noise around a
  per-container level, memory drifting around a base, network/block counters that only grow,
  pids), 100 containers per host;
- 5-minute rows: over the raw period merged from those raw rows with the product's own
  `stats.merge`; before it (days 2-7) generated directly in the rollup shape;
- 1-hour rows: merged with `stats.merge` from 5-minute rows where those exist, generated
  directly before that (days 8-30).

Proof that the bulk rows are what the product writes: for one host the newest 2 h of 5-minute
rows and 3 h of 1-hour rows are held back, then `stats.rollup_host` (the product's own code,
reading the raw rows back from the database) writes them, and they must equal the held-back
rows exactly. Rows go in with COPY on PostgreSQL and `bulk_create` on SQLite (so SQLite stores
what Django's JSONField writes), in time order like a live install (hosts interleaved).

Then it reports: rows (and container points) written per hour, rows per tier, the sizes
(`pg_total_relation_size('containers_statsbatch')`, heap/TOAST/indexes, `pg_database_size`;
the file size on SQLite), the time of `stats.series(...)` for one container and for a host for
each range (1h/24h/7d/30d), and one more simulated hour run through the product's
`rollup_all` + `prune` (timed, with the size afterwards: deleted rows are not returned to the
OS without VACUUM FULL, which is the steady-state picture).

Usage: .venv/bin/python bench/stats_storage.py [--database-url postgres://postgres@127.0.0.1:5432/dockmon_sbench]
Default database: a fresh SQLite file under /tmp/dockmon-bench-stats-storage.
Target: under 1 GB on PostgreSQL after 30 days.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import random
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats_cycle

DATA_DIR = Path("/tmp/dockmon-bench-stats-storage")
HOSTS = 10
PER_HOST = 100
INTERVAL = 10
RAW_HOURS = 24
FIVE_DAYS = 7
SIM_DAYS = 30
TARGET_BYTES = 1_000_000_000
PROOF_5M = timedelta(hours=2)
PROOF_1H = timedelta(hours=3)
GIB = 1 << 30


# Noise drawn once: random.gauss per value would make generating 86,400 rows of 100 points the
# bulk of the runtime. Each container walks the pools from its own offset; a row (the unit the
# database compresses) never sees a repeat.
_POOL = 100_003
_rnd_pool = random.Random(7)
GAUSS = [_rnd_pool.gauss(0, 1) for _ in range(_POOL)]
UNIFORM = [_rnd_pool.random() for _ in range(_POOL)]


class Box:
    """One simulated container: a level of CPU and memory, counters that only grow."""

    def __init__(self, rnd: random.Random):
        self.short = f"{rnd.getrandbits(48):012x}"
        self.i = rnd.randrange(_POOL)
        kind = rnd.random()
        if kind < 0.5:  # idle services
            self.cpu = rnd.uniform(0.0, 0.3)
            self.net_rate = rnd.uniform(0, 200)
        elif kind < 0.85:  # light
            self.cpu = rnd.uniform(0.5, 10)
            self.net_rate = rnd.uniform(200, 20_000)
        else:  # busy, some using several cores
            self.cpu = rnd.uniform(20, 180)
            self.net_rate = rnd.uniform(20_000, 2_000_000)
        self.idle = self.cpu < 0.1
        self.mem = int(math.exp(rnd.uniform(math.log(2 << 20), math.log(2 << 30))))
        self.limit = rnd.choice([16 * GIB] * 7 + [512 << 20, GIB, 2 * GIB])
        self.mem = min(self.mem, int(self.limit * 0.9))
        self.rx = rnd.randrange(0, 1 << 30)
        self.tx = rnd.randrange(0, 1 << 28)
        self.read = rnd.randrange(0, 1 << 28)
        self.write = rnd.randrange(0, 1 << 26)
        self.write_rate = rnd.choice([0, 0, 0, 100, 5_000, 50_000])
        self.pids = rnd.randint(1, 40)

    def _next(self) -> tuple[float, float]:
        """(a standard normal value, a uniform value in [0, 1))."""
        self.i = i = (self.i + 1) % _POOL
        return GAUSS[i], UNIFORM[i]

    def advance(self, seconds: float) -> None:
        g, u = self._next()
        self.rx += int(self.net_rate * seconds * (0.5 + u))
        self.tx += int(self.net_rate * 0.3 * seconds * (1.5 - u))
        if self.write_rate:
            self.write += int(self.write_rate * seconds * 2 * u)
        if u < 0.01:
            self.pids = max(1, self.pids + (1 if g > 0 else -1))
        elif u > 1 - 0.001 * seconds / INTERVAL:
            self.read += int(u * 1_000_000)
        # Memory drifts slowly around its base.
        self.mem = max(1 << 20, min(int(self.limit * 0.95), int(self.mem * (1 + 0.002 * g))))

    def raw(self) -> list:
        """A raw point exactly like stats._point: [cpu, mem, limit, rx, tx, read, write, pids]."""
        self.advance(INTERVAL)
        g, u = self._next()
        cpu = 0.0 if self.idle and u < 0.7 else round(max(0.0, self.cpu * (1 + 0.35 * g)), 2)
        from containers.stats import _kib as kib  # raw points keep sizes in KiB, as stats._point does

        return [cpu, kib(int(self.mem * (1 + 0.01 * g))), kib(self.limit), kib(self.rx), kib(self.tx), kib(self.read), kib(self.write), self.pids]

    def window(self, seconds: int) -> list:
        """A rollup point generated directly (13 values, min <= avg <= max)."""
        self.advance(seconds)
        g, u = self._next()
        avg = round(max(0.0, self.cpu * (1 + 0.1 * g)), 3)
        low = round(avg * 0.8 * u, 2)
        high = round(avg * (1.05 + 1.45 * u), 2)
        mem = int(self.mem * (1 + 0.005 * g))
        return [avg, low, high, mem, int(mem * (0.99 - 0.09 * u)), int(mem * (1.01 + 0.09 * u)), self.limit,
                self.rx, self.tx, self.read, self.write, self.pids, seconds // INTERVAL]


def synthetic_host_point(points: list[list], samples: int) -> list:
    """The `_host` key of a rollup row: like merging raw host totals (counts = containers x samples)."""
    from containers import stats

    total = stats._host_total(points)
    total[stats.CPU_MIN] = round(total[stats.CPU] * 0.85, 2)
    total[stats.CPU_MAX] = round(total[stats.CPU] * 1.2, 2)
    total[stats.MEM_MIN] = int(total[stats.MEM] * 0.97)
    total[stats.MEM_MAX] = int(total[stats.MEM] * 1.03)
    total[stats.COUNT] = len(points) * samples
    return total


def floor_to(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


class Writer:
    """Rows in time order. PostgreSQL: COPY from a second thread on its own connection, so the
    server parses and compresses (TOAST) while this thread generates the next rows. SQLite:
    bulk_create, so the file holds exactly what Django's JSONField writes."""

    CHUNK = 500

    def __init__(self, vendor: str, database_url: str = ""):
        self.vendor = vendor
        self.pending: list[tuple] = []
        self.rows = 0
        self.bytes_json = 0
        self.seconds = 0.0  # time this thread spent writing or waiting for the writer thread
        self.error: BaseException | None = None
        if vendor == "postgresql":
            self.queue: queue.Queue = queue.Queue(maxsize=8)
            self.thread = threading.Thread(target=self._copy_loop, args=(database_url,), name="copy", daemon=True)
            self.thread.start()

    def _copy_loop(self, database_url: str) -> None:
        import psycopg

        with psycopg.connect(database_url, connect_timeout=10) as conn:
            while True:
                chunk = self.queue.get()
                try:
                    if chunk is None:
                        return
                    if self.error is None:
                        with conn.cursor() as cur, cur.copy("COPY containers_statsbatch (host_id, tier, ts, data) FROM STDIN") as copy:
                            for row in chunk:
                                copy.write_row(row)
                        conn.commit()
                except BaseException as exc:  # reported by drain()
                    self.error = exc
                finally:
                    self.queue.task_done()

    def add(self, host_id, tier: str, ts: datetime, data: dict) -> None:
        self.pending.append((host_id, tier, ts, data))
        if len(self.pending) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        from django.db import transaction

        from containers.models import StatsBatch

        t0 = time.perf_counter()
        if self.vendor == "postgresql":
            chunk = []
            for host_id, tier, ts, data in self.pending:
                text = json.dumps(data, separators=(",", ":"))
                self.bytes_json += len(text)
                chunk.append((host_id, tier, ts, text))
            t0 = time.perf_counter()
            self.queue.put(chunk)
        else:
            objs = [StatsBatch(host_id=h, tier=t, ts=ts, data=d) for h, t, ts, d in self.pending]
            self.bytes_json += sum(len(json.dumps(d)) for _, _, _, d in self.pending)
            with transaction.atomic():
                StatsBatch.objects.bulk_create(objs, batch_size=self.CHUNK)
        self.rows += len(self.pending)
        self.pending.clear()
        self.seconds += time.perf_counter() - t0

    def drain(self) -> None:
        """Everything added so far is committed (the product's code reads it next)."""
        self.flush()
        if self.vendor == "postgresql":
            t0 = time.perf_counter()
            self.queue.join()
            self.seconds += time.perf_counter() - t0
            if self.error is not None:
                raise RuntimeError(f"COPY failed: {self.error}") from self.error

    def close(self) -> None:
        if self.vendor == "postgresql" and self.thread.is_alive():
            self.queue.put(None)
            self.thread.join(60)


def build(hosts, boxes, sim_now: datetime, writer: Writer, proof_host) -> dict:
    """Write the 30-day steady state; return the rows held back for the proof and phase timings."""
    from containers import stats
    from containers.choices import StatsTier

    raw_start = sim_now - timedelta(hours=RAW_HOURS)
    five_start = sim_now - timedelta(days=FIVE_DAYS)
    hour_start = floor_to(sim_now - timedelta(days=SIM_DAYS), 3600)
    complete_hours_end = floor_to(sim_now, 3600)
    # 1-hour windows that lie wholly inside the 5-minute range are merged from 5-minute rows.
    first_merged_hour = floor_to(five_start + timedelta(seconds=3599), 3600)
    held: dict[tuple, dict] = {}
    timings = {}

    def put(host, tier, ts, data):
        if proof_host is not None and host.pk == proof_host.pk and (
            (tier == StatsTier.FIVE_MINUTES and ts >= sim_now - PROOF_5M)
            or (tier == StatsTier.HOUR and ts >= complete_hours_end - PROOF_1H)
        ):
            held[(tier, ts)] = data
            return
        writer.add(host.pk, tier, ts, data)

    # Phase 1: 1-hour rows generated directly (days 30..8, before the 5-minute range).
    t0 = time.perf_counter()
    ts = hour_start
    while ts < first_merged_hour:
        for host in hosts:
            points = {b.short: b.window(3600) for b in boxes[host.pk]}
            points[stats.HOST_KEY] = synthetic_host_point(list(points.values()), 3600 // INTERVAL)
            put(host, StatsTier.HOUR, ts, points)
        ts += timedelta(hours=1)
    timings["hour_rows_direct_s"] = time.perf_counter() - t0

    # Phase 2: 5-minute rows generated directly (days 7..2), merged into 1-hour rows per hour.
    t0 = time.perf_counter()
    hour_buffers: dict = {host.pk: [] for host in hosts}

    def five_minute_row(host, ts, data):
        put(host, StatsTier.FIVE_MINUTES, ts, data)
        hour = floor_to(ts, 3600)
        buf = hour_buffers[host.pk]
        if buf and buf[0][0] != hour:
            flush_hour(host, buf)
        buf.append((hour, data))

    def flush_hour(host, buf):
        hour = buf[0][0]
        if first_merged_hour <= hour < complete_hours_end:
            per_key: dict[str, list] = {}
            for _, data in buf:
                for key, point in data.items():
                    per_key.setdefault(key, []).append(point)
            put(host, StatsTier.HOUR, hour, {key: stats.merge(points) for key, points in per_key.items()})
        buf.clear()

    ts = five_start
    while ts < raw_start:
        for host in hosts:
            points = {b.short: b.window(300) for b in boxes[host.pk]}
            points[stats.HOST_KEY] = synthetic_host_point(list(points.values()), 300 // INTERVAL)
            five_minute_row(host, ts, points)
        ts += timedelta(minutes=5)
    timings["five_minute_rows_direct_s"] = time.perf_counter() - t0

    # Phase 3: raw rows cycle by cycle (last 24 h); every 5 minutes merged like rollup_host does.
    t0 = time.perf_counter()
    raw_buffers: dict = {host.pk: [] for host in hosts}
    ts = raw_start
    while ts < sim_now:
        for host in hosts:
            data = {b.short: b.raw() for b in boxes[host.pk]}
            data[stats.HOST_KEY] = stats._host_total(list(data.values()))
            put(host, StatsTier.RAW, ts, data)
            raw_buffers[host.pk].append(data)
        ts += timedelta(seconds=INTERVAL)
        if int(ts.timestamp()) % 300 == 0:
            window = ts - timedelta(minutes=5)
            for host in hosts:
                per_key: dict[str, list] = {}
                for data in raw_buffers[host.pk]:
                    for key, point in data.items():
                        per_key.setdefault(key, []).append(point)
                raw_buffers[host.pk].clear()
                five_minute_row(host, window, {key: stats.merge(points) for key, points in per_key.items()})
    for host in hosts:  # the current hour is not complete: flush_hour keeps only complete ones
        if hour_buffers[host.pk]:
            flush_hour(host, hour_buffers[host.pk])
    writer.drain()
    timings["raw_rows_and_rollups_s"] = time.perf_counter() - t0
    return {"held": held, "timings": timings}


def build_part(host_pks: list, boxes: dict, sim_now: datetime, proof_pk, vendor: str, database_url: str) -> dict:
    """build() for some hosts with a writer of its own: run in a forked worker on PostgreSQL
    (generating the rows is pure Python, one core per worker), in this process on SQLite."""
    from types import SimpleNamespace

    hosts = [SimpleNamespace(pk=pk) for pk in host_pks]
    proof = SimpleNamespace(pk=proof_pk) if proof_pk in host_pks else None
    writer = Writer(vendor, database_url)
    try:
        built = build(hosts, {pk: boxes[pk] for pk in host_pks}, sim_now, writer, proof)
    finally:
        writer.close()
    return built | {"rows": writer.rows, "bytes_json": writer.bytes_json, "wait_s": writer.seconds,
                    "boxes": {pk: boxes[pk] for pk in host_pks}}


def prove(proof_host, held: dict, sim_now: datetime) -> dict:
    """The product's rollup_host must write exactly the rows held back."""
    from containers import stats
    from containers.choices import StatsTier
    from containers.models import StatsBatch

    t0 = time.perf_counter()
    five = stats.rollup_host(proof_host.pk, StatsTier.FIVE_MINUTES, now=sim_now)
    t1 = time.perf_counter()
    hour = stats.rollup_host(proof_host.pk, StatsTier.HOUR, now=sim_now)
    t2 = time.perf_counter()
    mismatches = []
    for (tier, ts), expected in sorted(held.items()):
        got = StatsBatch.objects.filter(host=proof_host, tier=tier, ts=ts).values_list("data", flat=True).first()
        if got != expected:
            mismatches.append(f"{tier} {ts:%H:%M}")
    expected_five = sum(1 for tier, _ in held if tier == StatsTier.FIVE_MINUTES)
    expected_hour = sum(1 for tier, _ in held if tier == StatsTier.HOUR)
    return {
        "held_back": {"5m": expected_five, "1h": expected_hour},
        "rollup_host_wrote": {"5m": five, "1h": hour},
        "rollup_host_5m_s": round(t1 - t0, 3),
        "rollup_host_1h_s": round(t2 - t1, 3),
        "mismatches": mismatches,
        "identical": not mismatches and five == expected_five and hour == expected_hour,
    }


def sizes(vendor: str) -> dict:
    from django.db import connection

    out: dict = {}
    with connection.cursor() as cur:
        if vendor == "postgresql":
            cur.execute(
                "SELECT pg_total_relation_size('containers_statsbatch'), pg_relation_size('containers_statsbatch'),"
                " COALESCE(pg_total_relation_size(reltoastrelid), 0), pg_indexes_size('containers_statsbatch'),"
                " pg_database_size(current_database()) FROM pg_class WHERE oid = 'containers_statsbatch'::regclass"
            )
            total, heap, toast, indexes, database = cur.fetchone()
            out.update(total=total, heap=heap, toast=toast, indexes=indexes, database=database)
            cur.execute(
                "SELECT tier, count(*), sum(pg_column_size(data)), avg(pg_column_size(data)), avg(octet_length(data::text))"
                " FROM containers_statsbatch GROUP BY tier ORDER BY tier"
            )
            out["tiers"] = {
                tier: {"rows": n, "stored_bytes": int(stored), "avg_stored": int(avg_stored), "avg_json_text": int(avg_text)}
                for tier, n, stored, avg_stored, avg_text in cur.fetchall()
            }
        else:
            db_path = Path(connection.settings_dict["NAME"])
            cur.execute("PRAGMA page_count")
            pages = cur.fetchone()[0]
            cur.execute("PRAGMA page_size")
            page_size = cur.fetchone()[0]
            cur.execute("PRAGMA freelist_count")
            free_pages = cur.fetchone()[0]
            wal = Path(str(db_path) + "-wal")
            out.update(file=db_path.stat().st_size, wal=wal.stat().st_size if wal.exists() else 0,
                       pages_bytes=pages * page_size, free_bytes=free_pages * page_size, database=db_path.stat().st_size)
            cur.execute("SELECT tier, count(*), sum(length(data)), avg(length(data)) FROM containers_statsbatch GROUP BY tier ORDER BY tier")
            out["tiers"] = {
                tier: {"rows": n, "stored_bytes": int(stored), "avg_stored": int(avg), "avg_json_text": int(avg)}
                for tier, n, stored, avg in cur.fetchall()
            }
    return out


def time_queries(host, short: str, sim_now: datetime, repeats: int) -> dict:
    from containers import stats

    out = {}
    for key_label, key in (("container", short), ("host", stats.HOST_KEY)):
        for range_name in stats.RANGES:
            runs, points = [], 0
            for _ in range(repeats):
                t0 = time.perf_counter()
                points = len(stats.series(host.pk, key, range_name, now=sim_now))
                runs.append((time.perf_counter() - t0) * 1000)
            out[f"{key_label} {range_name}"] = {
                "points": points, "first_ms": round(runs[0], 1), "p50_ms": round(statistics.median(runs), 1),
                "max_ms": round(max(runs), 1),
            }
    return out


def explain(vendor: str, host, short: str, sim_now: datetime) -> str:
    """The plan of the biggest container query (7d: the 5-minute tier) on PostgreSQL."""
    if vendor != "postgresql":
        return ""
    from django.db import connection
    from django.db.models.fields.json import KeyTransform

    from containers.choices import StatsTier
    from containers.models import StatsBatch

    qs = (StatsBatch.objects.filter(host_id=host.pk, tier=StatsTier.FIVE_MINUTES, ts__gte=sim_now - timedelta(days=7))
          .annotate(point=KeyTransform(short, "data")).order_by("ts").values_list("ts", "point"))
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


def one_more_hour(hosts, boxes, sim_now: datetime, writer: Writer) -> dict:
    """An hour of live operation at the steady state: raw rows in, then the product's rollup_all + prune."""
    from containers import stats
    from containers.choices import StatsTier

    ts = sim_now
    end = sim_now + timedelta(hours=1)
    t0 = time.perf_counter()
    while ts < end:
        for host in hosts:
            data = {b.short: b.raw() for b in boxes[host.pk]}
            data[stats.HOST_KEY] = stats._host_total(list(data.values()))
            writer.add(host.pk, StatsTier.RAW, ts, data)
        ts += timedelta(seconds=INTERVAL)
    writer.drain()
    insert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    written = stats.rollup_all(now=end)
    rollup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    deleted = stats.prune(now=end)
    prune_s = time.perf_counter() - t0
    return {"raw_rows": 3600 // INTERVAL * len(hosts), "insert_s": round(insert_s, 1), "rollup_all_written": dict(written),
            "rollup_all_s": round(rollup_s, 2), "prune_deleted": deleted, "prune_s": round(prune_s, 2)}


def mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def main() -> int:
    global HOSTS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default="", help="postgres://...bench... (created if missing, then EMPTIED). Default: fresh SQLite")
    p.add_argument("--repeats", type=int, default=5, help="runs of each series query")
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes generating rows (PostgreSQL only)")
    p.add_argument("--hosts", type=int, default=HOSTS, help="hosts of 100 containers (10 = the issue's 1,000 containers)")
    p.add_argument("--keep-data", action="store_true", help="leave the SQLite file in place")
    args = p.parse_args()

    HOSTS = args.hosts
    started = time.perf_counter()
    stats_cycle.setup_django(args.database_url, DATA_DIR)
    import _common
    from django.conf import settings
    from django.db import connection

    from containers.choices import HostStatus, StatsTier
    from containers.models import DockerHost

    vendor = connection.vendor
    assert (settings.DOCKMON_STATS_RAW_HOURS, settings.DOCKMON_STATS_5M_DAYS, settings.DOCKMON_STATS_1H_DAYS) == (24, 7, 90), \
        "the model assumes the default retention (raw 24 h, 5m 7 d, 1h 90 d)"
    print(f"machine {_common.machine()}, database {_common.db_label(None)}", flush=True)
    rnd = random.Random(args.seed)
    hosts = [DockerHost.objects.create(name=f"bench-storage-{i}", url=f"tcp://127.0.0.1:{20000 + i}", status=HostStatus.ONLINE)
             for i in range(HOSTS)]
    boxes = {host.pk: [Box(rnd) for _ in range(PER_HOST)] for host in hosts}
    sim_now = floor_to(datetime.now(UTC), 300)
    t0 = time.perf_counter()
    pks = [host.pk for host in hosts]
    workers = max(1, min(args.workers, len(pks))) if vendor == "postgresql" else 1
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from django.db import connections

        # No open connection may cross the fork: a child closing it would end the parent's session.
        connections.close_all()
        parts = [pks[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(build_part, part, boxes, sim_now, hosts[0].pk, vendor, args.database_url) for part in parts]
            results = [f.result() for f in futures]
    else:
        results = [build_part(pks, boxes, sim_now, hosts[0].pk, vendor, args.database_url)]
    build_s = time.perf_counter() - t0
    built = {"held": {}, "timings": {}}
    rows = bytes_json = 0
    wait_s = 0.0
    for result in results:
        built["held"].update(result["held"])
        boxes.update(result["boxes"])  # the counters go on from where the workers left them
        rows += result["rows"]
        bytes_json += result["bytes_json"]
        wait_s += result["wait_s"]
        for phase, seconds in result["timings"].items():
            built["timings"][phase] = max(built["timings"].get(phase, 0), seconds)
    print(f"wrote {rows:,} rows ({mb(bytes_json)} of JSON) in {build_s:.0f} s with {workers} worker(s) "
          f"(waiting for the database {wait_s:.0f} s); phases {({k: round(v) for k, v in built['timings'].items()})}", flush=True)
    writer = Writer(vendor, args.database_url)

    proof = prove(hosts[0], built["held"], sim_now)
    print(f"rollup_host proof: {proof}", flush=True)

    t0 = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE containers_statsbatch" if vendor == "postgresql" else "ANALYZE")
    analyze_s = time.perf_counter() - t0
    size = sizes(vendor)
    tiers = size["tiers"]

    per_hour = {"raw": 3600 // INTERVAL * HOSTS, "5m": 12 * HOSTS, "1h": HOSTS}
    bytes_per_hour = sum(per_hour[t] * tiers[t]["avg_stored"] for t in per_hour)
    extra_1h_rows_90d = (90 - SIM_DAYS) * 24 * HOSTS
    # 90-day estimate: the 1-hour tier keeps growing for 60 more days at its measured bytes per
    # row (stored data + the table's share per row: heap tuple header, index entries).
    rows_now = sum(t["rows"] for t in tiers.values())
    stored_now = sum(t["stored_bytes"] for t in tiers.values())
    overhead_per_row = max(0, (size["database"] if vendor == "sqlite" else size["total"]) - stored_now) / rows_now
    est_90d = (size["database"] if vendor == "sqlite" else size["total"]) + extra_1h_rows_90d * (tiers["1h"]["avg_stored"] + overhead_per_row)

    sample_host = hosts[min(3, len(hosts) - 1)]
    short = boxes[sample_host.pk][42].short
    queries = time_queries(sample_host, short, sim_now, args.repeats)
    plan = explain(vendor, sample_host, short, sim_now)
    after = one_more_hour(hosts, boxes, sim_now, writer)
    size_after = sizes(vendor)
    writer.close()

    print()
    print(f"model: {HOSTS} hosts x {PER_HOST} containers, every {INTERVAL} s; retention raw {RAW_HOURS} h, 5m {FIVE_DAYS} d, 1h 90 d; "
          f"simulated {SIM_DAYS} days ending {sim_now:%Y-%m-%d %H:%M} UTC")
    print(f"rows written per hour: raw {per_hour['raw']:,} + 5m {per_hour['5m']} + 1h {per_hour['1h']} = {sum(per_hour.values()):,} "
          f"({3600 // INTERVAL * HOSTS * PER_HOST:,} container points/h), about {mb(bytes_per_hour)}/h stored")
    for tier in (StatsTier.RAW, StatsTier.FIVE_MINUTES, StatsTier.HOUR):
        t = tiers[tier]
        print(f"  tier {tier:<3} rows {t['rows']:>7,}  stored {mb(t['stored_bytes']):>12}  per row {t['avg_stored']:>6,} B "
              f"(JSON text {t['avg_json_text']:,} B)")
    if vendor == "postgresql":
        print(f"pg_total_relation_size('containers_statsbatch') = {mb(size['total'])} (heap {mb(size['heap'])}, "
              f"TOAST {mb(size['toast'])}, indexes {mb(size['indexes'])}); pg_database_size = {mb(size['database'])}")
        verdict = size["total"] < TARGET_BYTES and size["database"] < TARGET_BYTES
    else:
        print(f"SQLite file {mb(size['file'])} (+ WAL {mb(size['wal'])}, free pages {mb(size['free_bytes'])})")
        verdict = size["database"] < TARGET_BYTES
    print(f"estimate at 90 days (1h tier full: +{extra_1h_rows_90d:,} rows): {mb(est_90d)}")
    print(f"target (< 1 GB after 30 days): {'met' if verdict else 'MISSED'}")
    print(f"VACUUM ANALYZE/ANALYZE {analyze_s:.1f} s")
    print(f"stats.series(...) at this size (host {sample_host.name}, {args.repeats} runs each):")
    for label, q in queries.items():
        print(f"  {label:<14} points {q['points']:>5}  first {q['first_ms']:>8.1f} ms  p50 {q['p50_ms']:>8.1f} ms  max {q['max_ms']:>8.1f} ms")
    if plan:
        print("EXPLAIN (ANALYZE, BUFFERS) container 7d, 5-minute tier part:\n" + plan)
    print(f"one more hour: {after}")
    if vendor == "postgresql":
        print(f"after that hour (no VACUUM): total {mb(size_after['total'])}, database {mb(size_after['database'])}")
    else:
        print(f"after that hour: SQLite file {mb(size_after['file'])} (+ WAL {mb(size_after['wal'])}, free pages {mb(size_after['free_bytes'])})")
    total_s = time.perf_counter() - started
    print(f"bench runtime {total_s:.0f} s")
    payload = {"bench": "stats_storage", "database": vendor, "rows_per_hour": per_hour, "bytes_per_hour": bytes_per_hour,
               "sizes": size, "estimate_90d": int(est_90d), "target_met": verdict, "proof": proof, "queries": queries,
               "one_more_hour": after, "sizes_after_hour": size_after, "runtime_s": round(total_s), "machine": _common.machine()}
    print("JSON " + json.dumps(payload, default=str, separators=(",", ":")), flush=True)
    if vendor == "sqlite" and not args.keep_data:
        import shutil

        from django.db import connections

        connections.close_all()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    return 0 if verdict and proof["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
