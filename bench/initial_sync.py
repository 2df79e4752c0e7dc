"""Initial sync: the first full reconcile of a host that already has 300 containers.

Creates 300 stopped busybox containers on the testbed's alpha engine (`docker create`, in
parallel, all carrying the label dockmon-bench=<run id>), adds the engine as a DockerHost and
times `manage.py monitor --once` (a real subprocess) from spawn to exit; then checks that the
database holds exactly those 300 containers, present, for that host. For comparison it also
times: the same command with no host at all (interpreter + Django start-up and exit), a second
`--once` when nothing changed (list only, no inspect), and the in-process path (engine list +
inspect with 16 threads + services.reconcile) on a second DockerHost row for the same engine.
The containers are removed afterwards (by label: nothing else on the engine is touched).

The first sync and the start-up baseline are measured in pairs, one right after the other
(--repeat times, each on a fresh DockerHost row, the previous one deleted), so that each
baseline is taken under the same load as its sync; the medians are reported.

Usage: .venv/bin/python bench/initial_sync.py [--count 300] [--repeat 3] [--database-url postgres://...]
Needs the testbed up (python -m testkit.testbed up). Target: < 3 s.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

TARGET_S = 3.0
LABEL = "dockmon-bench"


def labelled_ids(engine, run_id: str) -> list[str]:
    return engine.docker("ps", "-aq", "--no-trunc", "--filter", f"label={LABEL}={run_id}", check=False).stdout.split()


def remove_labelled(engine, run_id: str, parallel: int = 4) -> int:
    ids = labelled_ids(engine, run_id)
    chunks = [ids[i : i + 25] for i in range(0, len(ids), 25)]
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda chunk: engine.docker("rm", "-f", *chunk, check=False, timeout=120), chunks))
    return len(ids)


def run_once(bench, label: str) -> tuple[float, str]:
    """Spawn `manage.py monitor --once`; (wall seconds from spawn to exit, its log)."""
    started = time.perf_counter()
    proc = bench.start_monitor("--once", LOG_LEVEL="INFO")
    code = proc.wait(120)
    elapsed = time.perf_counter() - started
    log = proc.log()
    proc.stop()
    if code != 0:
        raise RuntimeError(f"monitor --once ({label}) exited {code}:\n{log}")
    return elapsed, log


def present_for(host, run_id: str) -> tuple[int, int]:
    """(present containers of ours for the host, all present containers for the host)."""
    from containers.models import Container

    rows = Container.objects.filter(host=host, removed_at__isnull=True).values_list("labels", flat=True)
    ours = sum(1 for labels in rows if (labels or {}).get(LABEL) == run_id)
    return ours, len(rows)


def in_process_sync(host, threads: int = 16, profile: bool = False) -> dict:
    """The monitor's initial reconcile, step by step, in this process."""
    from django.db import close_old_connections

    from containers import engine as eng
    from containers import services
    from containers.engine import facts as engine_facts

    out = {}
    t0 = time.perf_counter()
    client = eng.client_for_host(host)
    info = eng.engine_info(client)
    t1 = time.perf_counter()
    summaries = engine_facts.list_containers(client)
    t2 = time.perf_counter()

    def inspect(facts):
        try:
            return engine_facts.inspect_container(client, facts.container_id)
        except eng.ContainerGone:
            return None

    with ThreadPoolExecutor(threads) as pool:
        inspected = [f for f in pool.map(inspect, summaries) if f is not None]
    t3 = time.perf_counter()
    services.set_host_status(host.pk, "online", info=info)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    result = services.reconcile(host.pk, inspected, initial=True)
    t4 = time.perf_counter()
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats(35)
        out["profile"] = buf.getvalue()
    client.close()
    close_old_connections()
    out.update(
        connect_s=round(t1 - t0, 3),
        list_s=round(t2 - t1, 3),
        inspect_s=round(t3 - t2, 3),
        reconcile_db_s=round(t4 - t3, 3),
        total_s=round(t4 - t0, 3),
        listed=len(summaries),
        result=result,
    )
    return out


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=300, help="containers to create (default 300)")
    p.add_argument("--engine", default="alpha", help="testbed engine (default alpha)")
    p.add_argument("--parallel", type=int, default=8, help="parallel `docker create`s (default 8)")
    p.add_argument("--profile", action="store_true", help="cProfile the in-process services.reconcile and print the top functions")
    p.add_argument("--repeat", type=int, default=3, help="(start-up, first sync) pairs to measure (default 3)")
    args = p.parse_args()

    bench = _common.setup("initial_sync", args)
    from containers.models import DockerHost
    from testkit.testbed import Testbed

    tb = Testbed.load()
    engine = tb.engines[args.engine]
    image = tb.busybox_image
    run_id = bench.run_id
    started = time.monotonic()
    try:
        t0 = time.perf_counter()
        names = [f"dmb-sync-{run_id}-{i:03d}" for i in range(args.count)]
        with ThreadPoolExecutor(args.parallel) as pool:
            list(
                pool.map(
                    lambda name: engine.docker(
                        "create", "--network", "none", "--label", f"{LABEL}={run_id}", "--name", name, image, "sleep", "1",
                        timeout=120,
                    ),
                    names,
                )
            )
        create_s = time.perf_counter() - t0
        on_engine = len(engine.docker("ps", "-aq").stdout.split())

        pairs, verified = [], True
        for attempt in range(max(1, args.repeat)):
            DockerHost.objects.filter(name=f"bench-{args.engine}").delete()  # the next sync is a first sync again
            baseline_s, _ = run_once(bench, "no hosts")
            host = DockerHost.objects.create(name=f"bench-{args.engine}", url=engine.unix_url)
            sync_s, log = run_once(bench, "initial sync")
            match = re.search(r"reconciled: (\{.*\})", log)
            reconciled = match.group(1) if match else "(no reconcile line in the log)"
            ours, total = present_for(host, run_id)
            host.refresh_from_db()
            verified = verified and ours == args.count and host.status == "online"
            pairs.append((baseline_s, sync_s, _common.machine()["loadavg"]))
            print(f"pair {attempt + 1}: start-up alone {baseline_s:.2f} s, first sync {sync_s:.2f} s "
                  f"(load {pairs[-1][2]})", flush=True)
        baseline_s = statistics.median(p[0] for p in pairs)
        sync_s = statistics.median(p[1] for p in pairs)
        resync_s, _ = run_once(bench, "re-sync, nothing changed")
        ours_after, _ = present_for(host, run_id)
        verified = verified and ours_after == args.count

        inproc_host = DockerHost.objects.create(name=f"bench-{args.engine}-inprocess", url=engine.unix_url)
        inproc = in_process_sync(inproc_host, profile=args.profile)
        report = inproc.pop("profile", "")
        inproc_ours, _ = present_for(inproc_host, run_id)
        inproc_ok = inproc_ours == args.count

        elapsed = time.monotonic() - started
        met = sync_s < TARGET_S and verified
        print(f"initial_sync: {args.count} containers on {args.engine} ({on_engine} on the engine in all), "
              f"db={_common.db_label(bench)}, machine={_common.machine()}")
        print(f"setup: {args.count} x docker create in {create_s:.1f} s ({args.parallel} in parallel)")
        print(f"medians of {len(pairs)} pairs:")
        print(f"manage.py monitor --once, no hosts (start-up + exit)     {baseline_s:6.2f} s")
        print(f"manage.py monitor --once, first sync of {args.count}            {sync_s:6.2f} s   reconciled {reconciled}")
        print(f"    DB check: {ours} of ours present for the host ({total} present in all), host {host.status}: "
              f"{'OK' if verified else 'WRONG'} (every pair)")
        print(f"    first sync minus its start-up baseline (median)       "
              f"{statistics.median(sync - base for base, sync, _ in pairs):6.2f} s")
        print(f"manage.py monitor --once, re-sync with nothing changed     {resync_s:6.2f} s")
        print(f"in process: connect {inproc['connect_s']:.3f} s, list {inproc['list_s']:.3f} s ({inproc['listed']}), "
              f"inspect x{inproc['listed']} (16 threads) {inproc['inspect_s']:.3f} s, "
              f"reconcile (DB) {inproc['reconcile_db_s']:.3f} s, total {inproc['total_s']:.3f} s; "
              f"{inproc_ours} of ours present: {'OK' if inproc_ok else 'WRONG'}")
        if report:
            print(report)
        print(f"target first sync < {TARGET_S:.0f} s: {'MET' if met else 'MISSED'} ({sync_s:.2f} s); total {elapsed:.1f} s")
        _common.emit_summary(
            {
                "bench": "initial_sync",
                "db": bench.vendor,
                "count": args.count,
                "engine_containers": on_engine,
                "monitor_once_s": round(sync_s, 3),
                "monitor_once_no_hosts_s": round(baseline_s, 3),
                "pairs": [{"start_up_s": round(b, 3), "first_sync_s": round(t, 3), "loadavg": load} for b, t, load in pairs],
                "monitor_once_resync_s": round(resync_s, 3),
                "verified": verified,
                "in_process": inproc,
                "in_process_verified": inproc_ok,
                "target_s": TARGET_S,
                "target_met": met,
                "seconds": round(elapsed, 1),
            }
        )
        return 0 if verified else 1
    finally:
        bench.stop_all()
        t0 = time.perf_counter()
        removed = remove_labelled(engine, run_id)
        print(f"cleanup: removed {removed} containers in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        bench.finish()


if __name__ == "__main__":
    sys.exit(main())
