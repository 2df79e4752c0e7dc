"""Scale-out: memory of DockMon's processes idle and with 20 engines emitting events, event
latency while they do, and container-list throughput with 5,000 containers.

Phase 1 (engines): starts 20 fresh testbed engines (own data-root and socket each) with
--containers busybox containers each, adds them as hosts, and runs daphne, a Celery worker
(-c 2), beat and two monitors (they split the hosts by lease). Once every container is
recorded it samples the resident memory (VmRSS) of every process for --idle-seconds; then one
thread per engine stops and starts its containers in turn for --load-seconds (each stop waits
for DockMon's `container.state exited` on a WebSocket), sampling memory again. Latency is
engine `die` (timeNano, from a separate SDK event stream per engine) → receipt by the client,
and stop command start → receipt.

Phase 2 (throughput): stops the monitors, inserts 5,000 containers over 10 hosts (as
bench/container_list.py does) and runs wrk against GET /api/v1/containers/?page_size=100
(superuser token): one daphne process, then two daphne processes (one wrk each, summed) — one
per core.

Usage: .venv/bin/python bench/scaleout.py [--engines 20] [--containers 5] [--load-seconds 60]
       [--database-url postgres://postgres@127.0.0.1:5432/dockmon_bench]
Needs the testbed (python -m testkit.testbed up) and wrk (apt-get install wrk; installed
here when missing). Targets: RSS web < 200 MB, worker < 250 MB, monitor < 150 MB.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

LABEL = "dockmon-bench"
TARGETS_MB = {"web": 200, "worker": 250, "monitor": 150}


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class MemorySampler:
    """Max and mean RSS per role while running (a role may be several processes: the worker's
    main process plus its pool children are summed)."""

    def __init__(self, roles: dict[str, list[int]], every: float = 0.5):
        self.roles = roles
        self.every = every
        self.samples: dict[str, list[int]] = {name: [] for name in roles}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for name, pids in self.roles.items():
                total = 0
                for pid in pids:
                    total += rss_kib(pid) + sum(rss_kib(c) for c in children(pid))
                self.samples[name].append(total)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def figures(self) -> dict:
        out = {}
        for name, values in self.samples.items():
            if values:
                out[name] = {"max_mb": round(max(values) / 1024, 1), "mean_mb": round(sum(values) / len(values) / 1024, 1)}
        return out


class Listener(_common.StampedSocket):
    """All `container.state` messages, stamped on receipt."""

    def __init__(self, url: str):
        self.seen: dict[tuple[str, str], list[int]] = {}
        self.emitted: dict[int, int] = {}  # receipt ns -> the message's own ts (when DockMon emitted it)
        super().__init__(url)

    def on_message(self, msg: dict, now: int) -> None:
        if msg["type"] in ("container.state", "container.created"):
            self.seen.setdefault((msg["data"].get("key"), msg["data"].get("state")), []).append(now)
            self.emitted[now] = _common.iso_to_ns(msg["ts"])

    def wait_after(self, key: str, state: str, after_ns: int, timeout: float) -> int | None:
        def found():
            return next((t for t in self.seen.get((key, state), []) if t > after_ns), None)

        with self.cond:
            self.cond.wait_for(lambda: found() is not None, timeout)
            return found()


class DieStream(_common.DieEvents):
    """One engine's own `die` events (timeNano) for the bench's containers."""

    def __init__(self, unix_url: str, run_id: str):
        self.dies: dict[str, list[int]] = {}
        super().__init__(unix_url, LABEL, run_id)

    def on_die(self, short_id: str, ns: int) -> None:
        self.dies.setdefault(short_id, []).append(ns)

    def die_after(self, short_id: str, after_ns: int, timeout: float) -> int | None:
        def found():
            return next((t for t in self.dies.get(short_id, []) if t > after_ns), None)

        with self.cond:
            self.cond.wait_for(lambda: found() is not None, timeout)
            return found()


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    from testkit.testbed import apt_install

    apt_install(["wrk"])
    return shutil.which("wrk") or "/usr/bin/wrk"


def parse_wrk(text: str) -> dict:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    latency = re.search(r"Latency\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)", text)
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)

    def ms(value, unit):
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "latency_avg_ms": round(ms(latency.group(1), latency.group(2)), 1) if latency else None,
        "latency_p99_ms": round(ms(p99.group(1), p99.group(2)), 1) if p99 else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--engines", type=int, default=20)
    p.add_argument("--containers", type=int, default=5, help="containers per engine (default 5)")
    p.add_argument("--idle-seconds", type=float, default=20.0)
    p.add_argument("--load-seconds", type=float, default=60.0)
    p.add_argument("--list-containers", type=int, default=5000)
    p.add_argument("--wrk-seconds", type=int, default=15)
    p.add_argument("--wrk-connections", type=int, default=16)
    p.add_argument("--rate", type=float, default=0.0,
                   help="stops per second over all engines (each followed by a start); 0 = as fast as the engines go")
    p.add_argument("--pool", default="threads", help="Celery pool of the worker (DockMon's default: threads)")
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args()

    bench = _common.setup("scaleout", args)
    import requests
    from django.contrib.auth import get_user_model

    from accounts.models import APIToken
    from containers.models import Container, DockerHost
    from testkit.testbed import LOCAL_BUSYBOX_REF, Testbed

    testbed = Testbed.load()
    names = [f"bso{bench.run_id[:5]}{i:02d}" for i in range(args.engines)]
    results: dict = {"engines": args.engines, "containers_per_engine": args.containers, "db": None, "rate": args.rate}
    streams: list[DieStream] = []
    listener = None
    try:
        results["db"] = _common.db_label(bench)
        t0 = time.monotonic()
        engines = testbed.add_engines(names)
        print(f"{len(engines)} engines up in {time.monotonic() - t0:.1f} s", flush=True)
        per_engine: dict[str, list[str]] = {}
        for engine in engines:
            ids = []
            for n in range(args.containers):
                out = engine.docker("run", "-d", "--network", "none", "--label", f"{LABEL}={bench.run_id}", "--name", f"bso-{n}",
                                    LOCAL_BUSYBOX_REF, "sleep", "86400").stdout.strip()
                ids.append(out[:12])
            per_engine[engine.name] = ids
        hosts = {engine.name: DockerHost.objects.create(name=f"bench-{engine.name}", url=engine.unix_url) for engine in engines}
        admin = get_user_model().objects.create_superuser("bench-admin", password="bench-pw-12345")
        _, token = APIToken.issue(admin, name="bench")

        web = bench.start_daphne()
        worker = bench.start("worker", [_common.PYTHON, "-m", "celery", "-A", "dockmon_site", "worker", "--pool", args.pool, "-c",
                                        str(args.concurrency), "-l", "warning",
                                        "--without-gossip", "--without-mingle"])
        beat_dir = bench.data_dir / "beat"
        beat_dir.mkdir(parents=True, exist_ok=True)
        bench.start("beat", [_common.PYTHON, "-m", "celery", "-A", "dockmon_site", "beat", "-l", "warning", "--pidfile=", "-s",
                             str(beat_dir / "schedule"), "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"])
        monitors = [bench.start_monitor(DOCKMON_HOST_REFRESH_SECONDS="1") for _ in range(2)]
        total = args.engines * args.containers
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if Container.objects.filter(host__in=hosts.values(), state="running", removed_at__isnull=True).count() == total:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"not every container recorded; monitor log: {monitors[0].log()}")
        print(f"{total} containers recorded; idle for {args.idle_seconds:.0f} s", flush=True)
        roles = {"web": [web.pid], "worker": [worker.pid], "monitor-1": [monitors[0].pid], "monitor-2": [monitors[1].pid]}
        with MemorySampler(roles) as idle:
            time.sleep(args.idle_seconds)
        results["rss_idle"] = idle.figures()

        listener = Listener(f"ws://127.0.0.1:{web.port}/ws/events/?token={token}")
        streams = [DieStream(engine.unix_url, bench.run_id) for engine in engines]
        time.sleep(1.0)
        keys = {engine.name: [f"{hosts[engine.name].pk}:{short}" for short in per_engine[engine.name]] for engine in engines}
        die_to_receipt: list[float] = []
        die_to_emit: list[float] = []
        emit_to_receipt: list[float] = []
        command_to_receipt: list[float] = []
        missed = [0]
        lock = threading.Lock()
        stop_at = time.monotonic() + args.load_seconds

        def churn(index: int):
            import docker

            engine = engines[index]
            client = docker.DockerClient(base_url=engine.unix_url, version="1.41", timeout=30)
            client.api.trust_env = False
            n = 0
            period = len(engines) / args.rate if args.rate else 0.0
            next_at = time.monotonic() + (period * index / len(engines) if period else 0.0)
            try:
                while time.monotonic() < stop_at:
                    if period:
                        time.sleep(max(0.0, next_at - time.monotonic()))
                        next_at += period
                    short = per_engine[engine.name][n % args.containers]
                    key = keys[engine.name][n % args.containers]
                    n += 1
                    before = time.time_ns()
                    client.api.stop(short, timeout=0)
                    got = listener.wait_after(key, "exited", before, 15)
                    die = streams[index].die_after(short, before, 5)
                    with lock:
                        if got is None or die is None:
                            missed[0] += 1
                        else:
                            die_to_receipt.append((got - die) / 1e6)
                            emitted = listener.emitted.get(got, got)
                            die_to_emit.append((emitted - die) / 1e6)
                            emit_to_receipt.append((got - emitted) / 1e6)
                            command_to_receipt.append((got - before) / 1e6)
                    before = time.time_ns()
                    client.api.start(short)
                    listener.wait_after(key, "running", before, 15)
            finally:
                client.close()

        threads = [threading.Thread(target=churn, args=(i,)) for i in range(len(engines))]
        messages_before = listener.count
        with MemorySampler(roles) as loaded:
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(args.load_seconds + 60)
            elapsed = time.monotonic() - started
        results["rss_load"] = loaded.figures()
        results["events_per_second"] = round((listener.count - messages_before) / elapsed, 1)
        results["stops"] = len(die_to_receipt)
        results["missed"] = missed[0]
        results["die_to_receipt_ms"] = _common.summarize(die_to_receipt)
        results["command_to_receipt_ms"] = _common.summarize(command_to_receipt)
        results["die_to_emit_ms"] = _common.summarize(die_to_emit)
        results["emit_to_receipt_ms"] = _common.summarize(emit_to_receipt)
        watched = {m.pid: 0 for m in monitors}
        for monitor in monitors:
            text = monitor.log_path.read_text(errors="replace")
            watched[monitor.pid] = len(set(re.findall(r"watch start (\S+)", text)) - set(re.findall(r"watch stop (\S+)", text)))
        results["hosts_per_monitor"] = sorted(watched.values())
        print(f"load: {results['events_per_second']} messages/s received, {results['stops']} stops timed, {missed[0]} missed",
              flush=True)
        print(_common.fmt("engine die -> WebSocket receipt", results["die_to_receipt_ms"]), flush=True)
        print(_common.fmt("stop call -> WebSocket receipt", results["command_to_receipt_ms"]), flush=True)
        print(_common.fmt("  engine die -> emitted (monitor)", results["die_to_emit_ms"]), flush=True)
        print(_common.fmt("  emitted -> receipt (Redis, daphne)", results["emit_to_receipt_ms"]), flush=True)
        listener.close()
        listener = None
        for stream in streams:
            stream.close()
        streams = []
        for monitor in monitors:
            monitor.stop()

        # Phase 2: throughput of the container list.
        from container_list import populate

        wrk = ensure_wrk()
        DockerHost.objects.all().delete()
        populate(10, args.list_containers)
        path = "/api/v1/containers/?page_size=100"
        second = bench.start_daphne()
        header = f"Authorization: Token {token}"

        def run_wrk(port: int, threads: int) -> dict:
            out = subprocess.run([wrk, "-t", str(threads), "-c", str(args.wrk_connections), "-d", f"{args.wrk_seconds}s", "--latency",
                                  "-H", header, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                                 timeout=args.wrk_seconds + 60)
            return parse_wrk(out.stdout)

        check = requests.get(f"http://127.0.0.1:{web.port}{path}", headers={"Authorization": f"Token {token}"}, timeout=30)
        assert check.status_code == 200 and check.json()["count"] == args.list_containers, check.text[:300]
        one = run_wrk(web.port, 2)
        pair: list[dict] = []
        runners = [threading.Thread(target=lambda port=port: pair.append(run_wrk(port, 1))) for port in (web.port, second.port)]
        for thread in runners:
            thread.start()
        for thread in runners:
            thread.join()
        results["list_one_daphne"] = one
        results["list_two_daphne"] = {"rps": round(sum(r["rps"] for r in pair), 1),
                                      "latency_p99_ms": max((r["latency_p99_ms"] or 0) for r in pair),
                                      "non_2xx": sum(r["non_2xx"] for r in pair)}
        print(f"container list, {args.list_containers} containers, page of 100: one daphne {one['rps']:.1f} req/s "
              f"(p99 {one['latency_p99_ms']} ms); two daphne {results['list_two_daphne']['rps']:.1f} req/s", flush=True)
        for role, figures in (("idle", results["rss_idle"]), ("load", results["rss_load"])):
            print(f"RSS {role}: " + ", ".join(f"{name} {f['max_mb']} MB max / {f['mean_mb']} mean" for name, f in figures.items()),
                  flush=True)
        _common.emit_summary(results)
        return 0
    finally:
        if listener is not None:
            listener.close()
        for stream in streams:
            stream.close()
        bench.stop_all()
        testbed.remove_engines(names)
        bench.finish()


if __name__ == "__main__":
    sys.exit(main())
