"""Bulk stop and start of 200 containers on one host (issue 4: "bulk operations on a selection
(up to hundreds), each item reported").

Starts N busybox containers on the testbed's alpha engine (`--network none`, label
dockmon.bench=bulk, a shell loop that exits on SIGTERM), records them as the monitor would, and
times the product's bulk job — `containers.operations.create_job(keys, action, background=False)`,
the path the API and the Celery task run: one BulkJob row and one BulkJobItem per container, the
per-host bounded pool, each operation with its inspect, event row, audit row and WebSocket
message — for a stop of all N and then a start of all N, at each per-host concurrency asked for
(DOCKMON_BULK_CONCURRENCY). It checks that every item is reported ok and that the engine agrees
(all exited after the stop, all running after the start). The containers are removed at the end
(by label), whatever happened.

Usage: .venv/bin/python bench/bulk_ops.py [--count 200] [--concurrency 3,16]
           [--database-url postgres://postgres@127.0.0.1:5432/dockmon_bench_bulk]
Needs the testbed up (python -m testkit.testbed up).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

LABEL = "dockmon.bench=bulk"
COMMAND = 'trap "exit 0" TERM; while true; do sleep 1; done'


def labelled_ids(engine) -> list[str]:
    return engine.docker("ps", "-aq", "--no-trunc", "--filter", f"label={LABEL}", check=False).stdout.split()


def remove_labelled(engine, parallel: int) -> int:
    ids = labelled_ids(engine)
    chunks = [ids[i : i + 10] for i in range(0, len(ids), 10)]
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda chunk: engine.docker("rm", "-f", *chunk, check=False, timeout=180), chunks))
    return len(ids)


def engine_states(engine) -> dict[str, int]:
    out = engine.docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.State}}", check=False).stdout.split()
    counts: dict[str, int] = {}
    for state in out:
        counts[state] = counts.get(state, 0) + 1
    return counts


def timed_job(keys: list[str], action: str, user, concurrency: int) -> dict:
    from django.conf import settings
    from django.test import override_settings

    from containers import operations

    workers = max(settings.DOCKMON_BULK_WORKERS, concurrency)
    with override_settings(DOCKMON_BULK_CONCURRENCY=concurrency, DOCKMON_BULK_WORKERS=workers):
        t0 = time.perf_counter()
        job = operations.create_job(keys, action, user=user, options={"timeout": 10}, background=False)
        wall = time.perf_counter() - t0
    errors: dict[str, int] = {}
    for error in job.items.filter(ok=False).values_list("error", flat=True):
        errors[error] = errors.get(error, 0) + 1
    return {"wall_s": round(wall, 2), "ok": job.succeeded, "failed": job.failed, "per_container_ms": round(wall / len(keys) * 1000, 1),
            "errors": errors}


def main() -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--engine", default="alpha")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--concurrency", default="3,16", help="comma-separated per-host concurrencies to measure (3: the old waves of 3)")
    p.add_argument("--parallel", type=int, default=16, help="threads creating/removing the containers")
    args = p.parse_args()

    bench = _common.setup("bulk_ops", args)
    from django.contrib.auth import get_user_model

    from containers import engine as engine_api
    from containers import services
    from containers.choices import HostStatus
    from containers.engine import facts as engine_facts
    from containers.models import DockerHost
    from dockmon_site import realtime
    from testkit.testbed import Testbed

    tb = Testbed.load()
    engine = tb.engines[args.engine]
    concurrencies = [int(x) for x in args.concurrency.split(",") if x.strip()]
    print(f"machine {_common.machine()}, {_common.db_label(bench)}, engine {args.engine} ({engine.unix_url})", flush=True)
    results: dict = {}
    ok = True
    try:
        leftovers = remove_labelled(engine, args.parallel)
        if leftovers:
            print(f"removed {leftovers} leftover containers labelled {LABEL}", flush=True)
        t0 = time.perf_counter()

        def run(i: int) -> str:
            return engine.docker("run", "-d", "--network", "none", "--label", LABEL, "--name", f"dmb-bulk-{bench.run_id}-{i:03d}",
                                 "dockmon/busybox:latest", "sh", "-c", COMMAND, timeout=180).stdout.strip()

        with ThreadPoolExecutor(args.parallel) as pool:
            ids = list(pool.map(run, range(args.count)))
        print(f"started {len(ids)} containers in {time.perf_counter() - t0:.1f} s", flush=True)

        host = DockerHost.objects.create(name=f"bench-bulk-{bench.run_id}", url=engine.unix_url, status=HostStatus.ONLINE)
        client = engine_api.client_for_host(host)
        try:
            keys = [services.apply_facts(host.pk, engine_facts.inspect_container(client, cid), log=False).key for cid in ids]
        finally:
            client.close()
        user = get_user_model().objects.create_superuser(f"bench-{bench.run_id}", password="bench-password-123")

        for conc in concurrencies:
            stop = timed_job(keys, "stop", user, conc)
            after_stop = engine_states(engine)
            start = timed_job(keys, "start", user, conc)
            after_start = engine_states(engine)
            good = (stop["ok"] == start["ok"] == args.count and after_stop.get("exited") == args.count
                    and after_start.get("running") == args.count)
            ok = ok and good
            results[str(conc)] = {"stop": stop, "start": start, "engine_after_stop": after_stop, "engine_after_start": after_start,
                                  "all_reported_and_applied": good}
            print(f"per-host concurrency {conc:>3}: stop {args.count} in {stop['wall_s']:6.2f} s ({stop['ok']} ok) | "
                  f"start {args.count} in {start['wall_s']:6.2f} s ({start['ok']} ok) | engine {after_stop} then {after_start} | "
                  f"{'OK' if good else 'MISMATCH'} | load {_common.machine()['loadavg']}", flush=True)
            for what, outcome in (("stop", stop), ("start", start)):
                for error, n in outcome["errors"].items():
                    print(f"    {what} failed ×{n}: {error}", flush=True)
        realtime.flush(10)
    finally:
        t0 = time.perf_counter()
        removed = remove_labelled(engine, args.parallel)
        print(f"removed {removed} containers in {time.perf_counter() - t0:.1f} s; left: {len(labelled_ids(engine))}", flush=True)
        bench.finish()
    _common.emit_summary({"bench": "bulk_ops", "database": bench.vendor, "count": args.count, "machine": _common.machine(),
                          "results": results})
    return 0 if ok and results else 1


if __name__ == "__main__":
    sys.exit(main())
