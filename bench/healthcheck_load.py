"""Health checks under load: 1,000 checks every 10 s, a tenth of them against an endpoint that
never answers, with ONE Celery worker process.

Starts a threaded HTTP server and a socket that accepts and never answers, both on 127.0.0.1 in
this process; inserts one host, 1,000 container rows and 1,000 checks (interval 10 s, timeout
5 s, due times spread evenly over the first interval); starts one `celery worker --pool solo`
(a single process: the dispatch task, the run_checks tasks and the probe runner's threads all
live in it); then does what beat does, sending `healthchecks.dispatch_due_checks` every
DOCKMON_HEALTH_DISPATCH_SECONDS. At the end it reads the CheckResult rows: lateness is
`ts - scheduled_at` (when the request started minus when it was due), reported for the healthy
and the hanging checks separately, with the runs that should have happened in the measured
window and those that did.

Usage: .venv/bin/python bench/healthcheck_load.py [--checks 1000] [--hanging-fraction 0.1]
       [--seconds 60] [--database-url postgres://postgres@127.0.0.1:5432/dockmon_bench]
Target: lateness p95 < 1 s for the healthy checks, none missed.
"""

from __future__ import annotations

import http.server
import os
import socket
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

TARGET_P95_MS = 1000.0
# A Redis database of its own: other benchmarks' workers on the shared bench db would take these
# tasks (and run them against their own database), and the purge below must not empty their queue.
BROKER_URL = "redis://127.0.0.1:6379/14"
INTERVAL = 10
TIMEOUT = 5.0


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_healthy_server() -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    server.daemon_threads = True
    server.request_queue_size = 1024
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_hanging_server() -> tuple[socket.socket, list]:
    """Accept and never answer; connections are dropped after a minute to spare descriptors."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    held: list = []

    def accept():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append((time.monotonic(), conn))
            while held and time.monotonic() - held[0][0] > 60:
                held.pop(0)[1].close()

    threading.Thread(target=accept, daemon=True).start()
    return sock, held


def populate(n: int, hanging: int, healthy_url: str, hanging_url: str, start_at):
    from containers.models import Container, DockerHost
    from healthchecks.models import HealthCheck

    host = DockerHost.objects.create(name="bench-hc", url="unix:///nonexistent/docker.sock", enabled=False)
    containers = Container.objects.bulk_create([
        Container(key=f"{host.pk}:{i:012x}", host=host, short_id=f"{i:012x}", container_id=f"{i:064x}", name=f"svc-{i}",
                  state="running")
        for i in range(n)
    ])
    # Hanging checks are spread among the healthy ones (every 10th), due times evenly over one interval.
    checks, hung = [], 0
    for i, container in enumerate(containers):
        is_hanging = bool(hanging) and i % max(1, n // hanging) == 0 and hung < hanging
        hung += is_hanging
        url = f"{hanging_url}hang/{i}" if is_hanging else f"{healthy_url}ok/{i}"
        checks.append(HealthCheck(container=container, url=url, interval_seconds=INTERVAL, timeout_seconds=TIMEOUT,
                                  failure_threshold=3, next_due_at=start_at + timedelta(seconds=INTERVAL * i / n)))
    HealthCheck.objects.bulk_create(checks, batch_size=500)
    return host


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int) -> tuple[float, int]:
    rss, threads = 0.0, 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--checks", type=int, default=1000)
    p.add_argument("--hanging-fraction", type=float, default=0.1)
    p.add_argument("--seconds", type=float, default=60.0, help="measured run time after the warm-up (default 60)")
    p.add_argument("--warmup", type=float, default=20.0,
                   help="not measured: the first rounds, where every check turns unknown → healthy and emits an event (default 20)")
    args = p.parse_args()

    bench = _common.setup("healthcheck_load", args)
    from django.conf import settings
    from django.utils import timezone

    from dockmon_site.celery import app
    from healthchecks.models import CheckResult, HealthCheck
    from healthchecks.tasks import dispatch_due_checks

    healthy_server = start_healthy_server()
    hanging_sock, _held = start_hanging_server()
    healthy_url = f"http://127.0.0.1:{healthy_server.server_address[1]}/"
    hanging_url = f"http://127.0.0.1:{hanging_sock.getsockname()[1]}/"
    hanging = int(args.checks * args.hanging_fraction)
    app.conf.broker_url = BROKER_URL  # before the first connection
    try:
        app.control.purge()  # nothing left over from an earlier run in this bench's Redis db
        worker = bench.start("worker", [_common.PYTHON, "-m", "celery", "-A", "dockmon_site", "worker", "--pool", "solo",
                                        "--loglevel", os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"), "-n", f"hcbench-{bench.run_id}@%h", "--without-gossip",
                                        "--without-mingle", "--without-heartbeat"], REDIS_URL=BROKER_URL)
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start: {worker.log()}")
        start_at = timezone.now() + timedelta(seconds=3)
        populate(args.checks, hanging, healthy_url, hanging_url, start_at)
        warmup_end = start_at + timedelta(seconds=args.warmup)
        measure_end = warmup_end + timedelta(seconds=args.seconds)

        period = settings.DOCKMON_HEALTH_DISPATCH_SECONDS
        next_tick = time.monotonic()
        cpu_start, wall_start = cpu_seconds(worker.pid), time.monotonic()
        peak_rss, peak_threads = 0.0, 0
        while timezone.now() < measure_end:
            dispatch_due_checks.delay()  # exactly what beat sends
            rss, threads = rss_mb(worker.pid)
            peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
            next_tick += period
            time.sleep(max(0.0, next_tick - time.monotonic()))
        worker_cpu = (cpu_seconds(worker.pid) - cpu_start) / (time.monotonic() - wall_start)
        time.sleep(TIMEOUT + 2)  # let the last probes finish and be recorded

        window = CheckResult.objects.filter(scheduled_at__gte=warmup_end, scheduled_at__lt=measure_end)
        rows = list(window.values_list("health_check__url", "ts", "scheduled_at", "status", "error"))
        late = {"healthy": [], "hanging": []}
        failures = {"healthy": 0, "hanging": 0}
        timeouts = 0
        for url, ts, scheduled, status, error in rows:
            kind = "hanging" if "/hang/" in url else "healthy"
            late[kind].append((ts - scheduled).total_seconds() * 1000)
            failures[kind] += status == "failure"
            timeouts += error.startswith("Timed out")
        healthy_n = args.checks - hanging
        # Slots due in the window: each check is due every INTERVAL s from its own offset.
        expected = {"healthy": 0, "hanging": 0}
        for url, due in HealthCheck.objects.values_list("url", "next_due_at"):
            kind = "hanging" if "/hang/" in url else "healthy"
            offset = (due - start_at).total_seconds() % INTERVAL
            first = warmup_end + timedelta(seconds=offset)
            expected[kind] += max(0, int(((measure_end - first).total_seconds() + INTERVAL - 1e-6) // INTERVAL))
        stats = {kind: _common.summarize(values) for kind, values in late.items()}
        met = bool(late["healthy"]) and stats["healthy"]["p95"] < TARGET_P95_MS and len(late["healthy"]) >= expected["healthy"]
        print(f"healthcheck_load: {args.checks} checks ({healthy_n} healthy, {hanging} hanging; interval {INTERVAL} s, "
              f"timeout {TIMEOUT:g} s), one worker process (--pool solo), dispatch every {period:g} s, "
              f"{args.seconds:g} s measured after {args.warmup:g} s warm-up; db={_common.db_label(bench)}; machine={_common.machine()}")
        for kind in ("healthy", "hanging"):
            print(_common.fmt(f"lateness, {kind} checks", stats[kind]))
            print(f"  runs in window: {len(late[kind])} of {expected[kind]} due; failures {failures[kind]}")
        print(f"timeouts recorded: {timeouts}; worker CPU {worker_cpu:.2f} s per second, peak RSS {peak_rss:.0f} MB, "
              f"peak threads {peak_threads}")
        print(f"target healthy p95 < {TARGET_P95_MS:.0f} ms and none missed: {'MET' if met else 'MISSED'}")
        _common.emit_summary({
            "bench": "healthcheck_load",
            "db": bench.vendor,
            "checks": args.checks,
            "hanging": hanging,
            "seconds": args.seconds,
            "lateness_ms": stats,
            "runs": {kind: len(late[kind]) for kind in late},
            "expected_runs": expected,
            "failures": failures,
            "worker_peak_rss_mb": round(peak_rss, 1),
            "worker_cpu_per_second": round(worker_cpu, 3),
            "worker_peak_threads": peak_threads,
            "target_p95_ms": TARGET_P95_MS,
            "target_met": met,
        })
        return 0
    finally:
        bench.finish()
        healthy_server.shutdown()
        hanging_sock.close()


if __name__ == "__main__":
    sys.exit(main())
