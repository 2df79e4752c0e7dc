"""Event-to-WebSocket latency: `docker stop` on a real engine → `container.state exited` on a client.

Runs `manage.py monitor` and daphne against a fresh database, watches the testbed's alpha engine
(unix socket) as a DockerHost, connects a WebSocket client with a superuser token, starts N
busybox containers, then stops them one at a time (`docker stop -t 0`) and times how long each
takes to reach the client as `container.state` with `data.state == "exited"`:

  (a) from the start of the docker CLI command to receipt;
  (b) from the engine's own `die` event timestamp (timeNano, read from a separate events
      stream) to receipt; split into engine→emit (the monitor: stream read, inspect, DB write;
      the message's `ts` is taken at emit) and emit→receipt (on_commit, publisher thread,
      Redis channel layer, daphne consumer, WebSocket).

Usage: .venv/bin/python bench/event_latency.py [--count 100] [--database-url postgres://...]
Needs the testbed up (python -m testkit.testbed up). Target: p95 < 100 ms.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

TARGET_P95_MS = 100.0
LABEL = "dockmon-bench"


class Listener(_common.StampedSocket):
    """Which containers were seen running, and when each was first seen exited (receipt ns,
    the message's own ts ns)."""

    def __init__(self, url: str):
        self.running: set[str] = set()
        self.exited: dict[str, tuple[int, int]] = {}
        self.hello = False
        super().__init__(url)

    def on_message(self, msg: dict, now: int) -> None:
        if msg["type"] == "hello":
            self.hello = True
        elif msg["type"] in ("container.state", "container.created"):
            # A container seen first after it started arrives as `created` with state running
            # (no separate container.state running).
            key, state = msg["data"].get("key"), msg["data"].get("state")
            if state == "running":
                self.running.add(key)
            elif state == "exited" and msg["type"] == "container.state" and key not in self.exited:
                self.exited[key] = (now, _common.iso_to_ns(msg["ts"]))


class DieWatcher(_common.DieEvents):
    """The first `die` of each of our containers (engine timeNano)."""

    def __init__(self, unix_url: str, run_id: str):
        self.die_ns: dict[str, int] = {}
        super().__init__(unix_url, LABEL, run_id)

    def on_die(self, short_id: str, ns: int) -> None:
        self.die_ns[short_id] = ns

    def get(self, short_id: str, timeout: float) -> int | None:
        with self.cond:
            self.cond.wait_for(lambda: short_id in self.die_ns, timeout)
            return self.die_ns.get(short_id)


def remove_labelled(engine, run_id: str) -> int:
    ids = engine.docker("ps", "-aq", "--filter", f"label={LABEL}={run_id}", check=False).stdout.split()
    for i in range(0, len(ids), 50):
        engine.docker("rm", "-f", *ids[i : i + 50], check=False, timeout=120)
    return len(ids)


def open_bench(name: str, args):
    """_common.setup() and the testbed engine to use. Returns (bench, testbed, engine)."""
    bench = _common.setup(name, args)
    from testkit.testbed import Testbed

    tb = Testbed.load()
    return bench, tb, tb.engines[args.engine]


def add_stack_arguments(p, timeout: float) -> None:
    p.add_argument("--engine", default="alpha", help="testbed engine (default alpha)")
    p.add_argument("--parallel", type=int, default=6, help="parallel `docker run`s while setting up (default 6)")
    p.add_argument("--timeout", type=float, default=timeout, help=f"seconds to wait for one event (default {timeout:g})")


def start_stack(bench, engine, **monitor_env):
    """The engine as a host, `manage.py monitor` (no periodic reconcile: only events should
    matter) and daphne, and a superuser's WebSocket client that has had its hello.
    Returns (host, monitor, daphne, listener)."""
    from django.contrib.auth import get_user_model

    from accounts.models import APIToken
    from containers.models import DockerHost

    admin = get_user_model().objects.create_superuser("bench-admin", password="bench-pw-12345")
    _, raw = APIToken.issue(admin, name="bench")
    host = DockerHost.objects.create(name=f"bench-{engine.name}", url=engine.unix_url)
    monitor = bench.start_monitor(DOCKMON_RECONCILE_SECONDS=3600, DOCKMON_HOST_REFRESH_SECONDS=1, **monitor_env)
    daphne = bench.start_daphne()
    deadline = time.monotonic() + 30
    while DockerHost.objects.get(pk=host.pk).status != "online":
        if time.monotonic() > deadline or not monitor.alive():
            raise RuntimeError(f"host never came online; monitor log:\n{monitor.log()}")
        time.sleep(0.1)
    listener = Listener(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={raw}")
    if not listener.wait(lambda: listener.hello, 10):
        raise RuntimeError(f"no hello on the WebSocket; daphne log:\n{daphne.log()}")
    return host, monitor, daphne, listener


def start_containers(engine, image: str, run_id: str, names: list[str], host, listener, parallel: int):
    """Runs one labelled busybox per name; waits until the client has seen every one running.
    Returns (container ids, keys)."""

    def run(name: str) -> str:
        out = engine.docker(
            "run", "-d", "--network", "none", "--label", f"{LABEL}={run_id}", "--name", name, image, "sleep", "3600",
            timeout=120,
        )
        return out.stdout.strip()

    with ThreadPoolExecutor(parallel) as pool:
        ids = list(pool.map(run, names))
    keys = [f"{host.pk}:{cid[:12]}" for cid in ids]
    if not listener.wait(lambda: all(k in listener.running for k in keys), 60 + len(keys) / 2):
        raise RuntimeError(f"only {sum(k in listener.running for k in keys)}/{len(keys)} running messages arrived")
    return ids, keys


def close_up(bench, engine, run_id: str, *closers) -> None:
    """Closes the listener and die watcher, stops DockMon's processes, removes the containers."""
    for closer in closers:
        if closer is not None:
            closer.close()
    bench.stop_all()
    removed = remove_labelled(engine, run_id)
    print(f"cleanup: stopped {len(bench.procs)} processes, removed {removed} containers", file=sys.stderr)
    bench.finish()


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=100, help="containers to stop, one at a time (default 100)")
    add_stack_arguments(p, timeout=10.0)
    p.add_argument("--stop-via", choices=("cli", "api"), default="cli",
                   help="stop with the docker CLI (default) or with one Engine API call (POST /containers/{id}/stop?t=0)")
    args = p.parse_args()

    bench, tb, engine = open_bench("event_latency", args)
    image = tb.busybox_image
    run_id = bench.run_id
    listener = watcher = None
    results: list[dict] = []
    missed: list[str] = []
    started = time.monotonic()
    try:
        host, monitor, daphne, listener = start_stack(bench, engine)
        watcher = DieWatcher(engine.unix_url, run_id)
        names = [f"dmb-lat-{run_id}-{i:03d}" for i in range(args.count)]
        t0 = time.monotonic()
        ids, keys = start_containers(engine, image, run_id, names, host, listener, args.parallel)
        setup_s = time.monotonic() - t0
        time.sleep(1.0)  # let the monitor's queue settle

        api = None
        if args.stop_via == "api":
            import docker

            api = docker.APIClient(base_url=engine.unix_url, version="1.41", timeout=30)
            api.trust_env = False
            api.ping()  # open the connection before timing
        for name, cid, key in zip(names, ids, keys, strict=True):
            t_cli = time.time_ns()
            if api is not None:
                api.stop(cid, timeout=0)
                subprocess_ok = True
            else:
                subprocess_ok = engine.docker("stop", "-t", "0", name, check=False, timeout=30).returncode == 0
            t_cli_done = time.time_ns()
            if not subprocess_ok or not listener.wait(lambda key=key: key in listener.exited, args.timeout):
                missed.append(key)
                continue
            receipt_ns, emit_ns = listener.exited[key]
            die_ns = watcher.get(cid[:12], 5)
            results.append(
                {
                    "key": key,
                    "cli_to_receipt": (receipt_ns - t_cli) / 1e6,
                    "cli_duration": (t_cli_done - t_cli) / 1e6,
                    "die_to_receipt": None if die_ns is None else (receipt_ns - die_ns) / 1e6,
                    "die_to_emit": None if die_ns is None else (emit_ns - die_ns) / 1e6,
                    "emit_to_receipt": (receipt_ns - emit_ns) / 1e6,
                    "cli_to_die": None if die_ns is None else (die_ns - t_cli) / 1e6,
                }
            )

        elapsed = time.monotonic() - started
        series = {
            name: _common.summarize([r[name] for r in results if r[name] is not None])
            for name in ("cli_to_receipt", "die_to_receipt", "cli_duration", "cli_to_die", "die_to_emit", "emit_to_receipt")
        }
        via = "docker CLI" if args.stop_via == "cli" else "API call"
        labels = {
            "cli_to_receipt": f"(a) {via} start -> WS receipt",
            "die_to_receipt": "(b) engine die timeNano -> WS receipt",
            "cli_duration": f"    {via} run time (until it returned)",
            "cli_to_die": f"    {via} start -> engine die",
            "die_to_emit": "    die -> emit (monitor: read, inspect, DB)",
            "emit_to_receipt": "    emit -> receipt (Redis, daphne, WS)",
        }
        print(f"event_latency: {len(results)}/{args.count} events on {args.engine} ({engine.unix_url}), "
              f"db={_common.db_label(bench)}, machine={_common.machine()}")
        print(f"setup: {args.count} containers started and seen running in {setup_s:.1f} s; WS messages seen: {listener.count}")
        for name, label in labels.items():
            print(_common.fmt(label, series[name]))
        if missed:
            print(f"MISSED {len(missed)} events (no exited message within {args.timeout}s): {missed[:5]}")
        p95_b = series["die_to_receipt"].get("p95")
        p95_a = series["cli_to_receipt"].get("p95")
        met = p95_b is not None and p95_b < TARGET_P95_MS and not missed
        print(f"target p95 < {TARGET_P95_MS:.0f} ms: (b) {'MET' if met else 'MISSED'} ({p95_b} ms); "
              f"(a) {'met' if p95_a is not None and p95_a < TARGET_P95_MS else 'missed'} ({p95_a} ms); total {elapsed:.1f} s")
        _common.emit_summary(
            {
                "bench": "event_latency",
                "db": bench.vendor,
                "count": args.count,
                "stop_via": args.stop_via,
                "received": len(results),
                "missed": len(missed),
                "cli_to_receipt_ms": series["cli_to_receipt"],
                "die_to_receipt_ms": series["die_to_receipt"],
                "die_to_emit_ms": series["die_to_emit"],
                "emit_to_receipt_ms": series["emit_to_receipt"],
                "cli_duration_ms": series["cli_duration"],
                "target_p95_ms": TARGET_P95_MS,
                "target_met": met,
                "seconds": round(elapsed, 1),
            }
        )
        return 0 if results else 1
    finally:
        close_up(bench, engine, run_id, listener, watcher)

if __name__ == "__main__":
    sys.exit(main())
