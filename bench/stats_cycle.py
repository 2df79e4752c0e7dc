"""One stats cycle for 100 running containers on one host (issue 4).

Starts N running busybox containers on the testbed's alpha engine (`--network none`, label
dockmon.bench=stats, started in parallel), adds the engine as an online DockerHost and runs
`containers.stats.collect_host(host_id)` — the product's own cycle: list running containers,
one engine stats call per container on a thread pool (one-shot once the warm-up cycle has left
each container's CPU counters in the cache), one StatsBatch row, one `stats.sample` bus event
published to the channel layer (Redis) — several times at each concurrency asked for.
Per cycle it records the wall time, the CPU time of this process (`time.process_time()`, all
threads, and `getrusage(RUSAGE_SELF)`), the CPU time the engine (dockerd) spent meanwhile, and
how many of our containers are in the row written. The containers are removed at the end (by
label, in parallel), whatever happened.

Usage: .venv/bin/python bench/stats_cycle.py [--count 100] [--cycles 5] [--concurrency 16,32,64,100]
           [--database-url postgres://postgres@127.0.0.1:5432/dockmon_sbench_cycle] [--probe]
Needs the testbed up (python -m testkit.testbed up).
Targets: under 3 s wall and under 1 CPU-second of DockMon's own process per cycle.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA_DIR = Path("/tmp/dockmon-bench-stats")
REDIS_URL = "redis://127.0.0.1:6379/12"
LABEL = "dockmon.bench=stats"
COMMAND = 'trap "exit 0" TERM; while true; do sleep 5; done'
TARGET_WALL_S = 3.0
TARGET_CPU_S = 1.0


def setup_django(database_url: str, data_dir: Path = DATA_DIR) -> None:
    """Environment before Django is imported, then django.setup() and migrate on an empty DB.

    SQLite: a fresh file in our own data dir (the product's default SQLite settings).
    PostgreSQL: the database is created if missing and emptied (the name must contain 'bench').
    """
    if not database_url and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["DOCKMON_DATA_DIR"] = str(data_dir)
    os.environ["REDIS_URL"] = REDIS_URL
    # Our own channel prefix: the samples we publish reach no other engineer's consumers.
    os.environ["DOCKMON_CHANNEL_PREFIX"] = f"dmbenchstats{os.getpid()}{uuid.uuid4().hex[:6]}"
    os.environ["SECRET_KEY"] = "bench-secret-key-not-for-production-" + "x" * 20
    os.environ["DJANGO_SETTINGS_MODULE"] = "dockmon_site.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        os.environ.pop(var, None)
    if database_url:
        import _common

        _common._prepare_postgres(database_url)
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    if database_url:
        call_command("flush", verbosity=0, interactive=False)


def cpu_seconds() -> tuple[float, float]:
    """(process_time, ru_utime + ru_stime) of this process, every thread included."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time(), ru.ru_utime + ru.ru_stime


def proc_cpu(pid: int | None) -> float:
    """utime + stime of another process from /proc (seconds); 0 when unknown."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def engine_pid(engine) -> int | None:
    try:
        return int(Path(engine.pidfile).read_text().strip())
    except (OSError, ValueError):
        return None


def labelled_ids(engine) -> list[str]:
    return engine.docker("ps", "-aq", "--no-trunc", "--filter", f"label={LABEL}", check=False).stdout.split()


def remove_labelled(engine, parallel: int = 8) -> int:
    ids = labelled_ids(engine)
    chunks = [ids[i : i + 10] for i in range(0, len(ids), 10)]
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda chunk: engine.docker("rm", "-f", *chunk, check=False, timeout=180), chunks))
    return len(ids)


def start_containers(engine, image: str, count: int, parallel: int, run_id: str) -> list[str]:
    def run(i: int) -> str:
        out = engine.docker(
            "run", "-d", "--network", "none", "--label", LABEL, "--name", f"dmb-stats-{run_id}-{i:03d}",
            image, "sh", "-c", COMMAND, timeout=180,
        )
        return out.stdout.strip()

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(run, range(count)))


def wait_next_second() -> None:
    """collect_host stamps a row with the whole second it started in and ignores a conflict:
    start each measured cycle in a fresh second so every cycle's row is really written."""
    time.sleep(1.0 - (time.time() % 1.0) + 0.01)


def one_cycle(host, ours: set[str], concurrency: int, dockerd_pid: int | None) -> dict:
    from containers import stats
    from containers.choices import StatsTier
    from containers.models import StatsBatch

    wait_next_second()
    before = StatsBatch.objects.filter(host=host, tier=StatsTier.RAW).count()
    p0, r0 = cpu_seconds()
    d0 = proc_cpu(dockerd_pid)
    w0 = time.perf_counter()
    result = stats.collect_host(host.pk, concurrency=concurrency)
    wall = time.perf_counter() - w0
    p1, r1 = cpu_seconds()
    d1 = proc_cpu(dockerd_pid)
    rows = StatsBatch.objects.filter(host=host, tier=StatsTier.RAW).order_by("-ts")
    written = rows.count() - before
    data = rows.values_list("data", flat=True).first() or {}
    keys = set(data) - {stats.HOST_KEY}
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(p1 - p0, 3),
        "rusage_cpu_s": round(r1 - r0, 3),
        "dockerd_cpu_s": round(d1 - d0, 2),
        "samples": result["containers"],
        "errors": result["errors"],
        "ours_in_row": len(keys & ours),
        "row_written": written == 1,
    }


def summarize(cycles: list[dict], key: str) -> dict:
    import _common

    values = [c[key] for c in cycles]
    return {"p50": round(statistics.median(values), 3), "max": round(max(values), 3), "min": round(min(values), 3),
            "p95": round(_common.percentile(values, 95), 3)}


def probe_engine(host, ids: list[str]) -> dict:
    """Why a cycle takes what it takes: every stats call of one round timed on its own, all at
    once (one thread per container): the full call (stream=False: the engine skips its first,
    priming frame, then waits for the next one, its collector ticking about once a second; the
    product's first cycle and its fallback) and the one-shot call (no priming frame, so no
    precpu_stats: the product takes CPU % from the previous cycle; its steady state)."""
    from containers import engine
    from containers.engine import stats as engine_stats

    client = engine.client_for_host(host)
    out = {}
    try:
        for label, call in (
            ("full call (stream=False): first cycle", lambda cid: engine_stats.container_stats_doc(client, cid)),
            ("one-shot (stream=False, one_shot=True): later cycles", lambda cid: engine_stats.container_stats_doc(client, cid, one_shot=True)),
        ):
            def timed(cid, call=call):
                t0 = time.perf_counter()
                call(cid)
                return time.perf_counter() - t0

            wait_next_second()
            w0 = time.perf_counter()
            with ThreadPoolExecutor(len(ids)) as pool:
                latencies = list(pool.map(timed, ids))
            out[label] = {"round_wall_s": round(time.perf_counter() - w0, 3), "per_call_s": summarize([{"v": v} for v in latencies], "v")}
    finally:
        client.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default="", help="postgres://...bench... (created if missing, then EMPTIED). Default: fresh SQLite")
    p.add_argument("--engine", default="alpha")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--concurrency", default="16,32,64,100", help="comma-separated pool sizes to measure")
    p.add_argument("--parallel", type=int, default=16, help="threads starting/removing containers")
    p.add_argument("--probe", action="store_true", help="also time each engine stats call of one round (why the wall time)")
    p.add_argument("--keep-data", action="store_true")
    args = p.parse_args()

    setup_django(args.database_url)
    import _common
    from django.conf import settings

    from containers.choices import HostStatus
    from containers.models import DockerHost
    from testkit.testbed import Testbed

    tb = Testbed.load()
    engine = tb.engines[args.engine]
    image = "dockmon/busybox:latest"
    run_id = uuid.uuid4().hex[:6]
    concurrencies = [int(x) for x in args.concurrency.split(",") if x.strip()]
    vendor = "postgresql" if args.database_url else "sqlite"
    print(f"machine {_common.machine()}, database {vendor}, engine {args.engine} ({engine.unix_url}), "
          f"default DOCKMON_STATS_CONCURRENCY={settings.DOCKMON_STATS_CONCURRENCY}", flush=True)
    results: dict = {}
    try:
        leftovers = remove_labelled(engine, args.parallel)
        if leftovers:
            print(f"removed {leftovers} leftover containers labelled {LABEL}", flush=True)
        t0 = time.perf_counter()
        ids = start_containers(engine, image, args.count, args.parallel, run_id)
        ours = {cid[:12] for cid in ids}
        running = engine.docker("ps", "-q", check=False).stdout.split()
        print(f"started {len(ids)} containers in {time.perf_counter() - t0:.1f} s; running on the engine: {len(running)}",
              flush=True)

        host = DockerHost.objects.create(name=f"bench-stats-{run_id}", url=engine.unix_url, status=HostStatus.ONLINE)
        dockerd_pid = engine_pid(engine)

        # Warm-up: imports, the DB connection, the Redis connection of the channel layer.
        warm = one_cycle(host, ours, settings.DOCKMON_STATS_CONCURRENCY, dockerd_pid)
        print(f"warm-up cycle: {warm}", flush=True)
        for conc in concurrencies:
            cycles = [one_cycle(host, ours, conc, dockerd_pid) for _ in range(args.cycles)]
            entry = {
                "cycles": cycles,
                "wall_s": summarize(cycles, "wall_s"),
                "cpu_s": summarize(cycles, "cpu_s"),
                "rusage_cpu_s": summarize(cycles, "rusage_cpu_s"),
                "dockerd_cpu_s": summarize(cycles, "dockerd_cpu_s"),
                "samples": sorted({c["samples"] for c in cycles}),
                "ours_in_row": sorted({c["ours_in_row"] for c in cycles}),
                "errors": sum(c["errors"] for c in cycles),
                "rows_written": sum(c["row_written"] for c in cycles),
            }
            entry["target_met"] = (
                entry["wall_s"]["max"] < TARGET_WALL_S and entry["cpu_s"]["max"] < TARGET_CPU_S
                and entry["ours_in_row"] == [args.count]
            )
            results[str(conc)] = entry
            print(
                f"concurrency {conc:>3}: wall p50 {entry['wall_s']['p50']:.2f} s max {entry['wall_s']['max']:.2f} s | "
                f"CPU p50 {entry['cpu_s']['p50']:.2f} s max {entry['cpu_s']['max']:.2f} s "
                f"(rusage max {entry['rusage_cpu_s']['max']:.2f}) | dockerd CPU p50 {entry['dockerd_cpu_s']['p50']:.2f} s | "
                f"samples {entry['samples']} ours {entry['ours_in_row']} errors {entry['errors']} "
                f"rows {entry['rows_written']}/{args.cycles} | target {'met' if entry['target_met'] else 'MISSED'}",
                flush=True,
            )
        if args.probe:
            results["probe"] = probe_engine(host, ids)
            for label, entry in results["probe"].items():
                print(f"probe {label}: round of {len(ids)} calls {entry['round_wall_s']:.2f} s, per call {entry['per_call_s']}", flush=True)
    finally:
        t0 = time.perf_counter()
        removed = remove_labelled(engine, args.parallel)
        print(f"removed {removed} containers in {time.perf_counter() - t0:.1f} s; left: {len(labelled_ids(engine))}", flush=True)
        if not args.keep_data and not args.database_url:
            shutil.rmtree(DATA_DIR, ignore_errors=True)
    print("JSON " + json.dumps({"bench": "stats_cycle", "database": vendor, "count": args.count,
                                "machine": _common.machine(), "results": results}, separators=(",", ":")), flush=True)
    return 0 if results and all(r["target_met"] for k, r in results.items() if k != "probe") else 1


if __name__ == "__main__":
    sys.exit(main())
