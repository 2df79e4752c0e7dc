"""Event-to-WebSocket latency with alert rules: `docker stop` → `container.state exited` on a
client, with 0, then 10, then 200 enabled `container_stopped` rules, in one run.

Same stack as bench/event_latency.py (`manage.py monitor` and daphne on a fresh database, the
testbed's alpha engine, a WebSocket client with a superuser token), plus one webhook channel
whose receiver is gone (a closed loopback port) on every rule. The monitor runs with Celery
eager, as in alerts/tests/test_live.py: rule evaluation and delivery run in the monitor process
itself (no worker), which is where they could get in the way of the live path. With --worker
they run in one Celery worker process instead, as deployed.

Each phase stops --count containers one at a time (`docker stop -t 0`, back to back) and times
(a) CLI start → WebSocket receipt and (b) engine `die` → receipt. The alerts raised during the
run are counted at the end (waiting up to --settle for the last ones); the exit status is 0
only when the latency target is met and every expected alert was raised.

Usage: .venv/bin/python bench/event_latency_rules.py [--count 40] [--database-url postgres://...]
Target: p95 with rules within 25 % of p95 without.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from event_latency import DieWatcher, add_stack_arguments, close_up, open_bench, start_containers, start_stack

PHASES = (0, 10, 200)
TARGET_RATIO = 1.25


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_rules(total: int, channel) -> None:
    from alerts.models import AlertRule

    have = AlertRule.objects.count()
    for i in range(have, total):
        rule = AlertRule.objects.create(name=f"bench stopped {i}", kind="container_stopped", enabled=True)
        rule.channels.set([channel])


def start_worker(bench) -> None:
    from dockmon_site.celery import app

    name = f"rulesbench-{bench.run_id}@{socket.gethostname()}"
    worker = bench.start("worker", [_common.PYTHON, "-m", "celery", "-A", "dockmon_site", "worker", "--pool", "solo",
                                    "--loglevel", "WARNING", "-n", name, "--without-gossip", "--without-mingle",
                                    "--without-heartbeat"])
    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[name], timeout=0.5):
        if not worker.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start: {worker.log()}")


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=40, help="containers stopped per phase (default 40)")
    add_stack_arguments(p, timeout=15.0)
    p.add_argument("--settle", type=float, default=300.0,
                   help="seconds to wait at the end for every alert to be raised (default 300)")
    p.add_argument("--worker", action="store_true",
                   help="evaluate and deliver in one Celery worker (--pool solo), as deployed, instead of eager in the monitor")
    args = p.parse_args()

    bench, tb, engine = open_bench("event_latency_rules", args)
    from alerts.models import Alert, Notification, NotificationChannel

    run_id = bench.run_id
    listener = watcher = None
    started = time.monotonic()
    try:
        channel = NotificationChannel(name="receiver gone", kind="webhook", config={})
        channel.set_secrets({"url": f"http://127.0.0.1:{closed_port()}/hook"})
        channel.save()
        host, _, _, listener = start_stack(bench, engine, **({} if args.worker else {"CELERY_TASK_ALWAYS_EAGER": "true"}))
        if args.worker:
            start_worker(bench)
        watcher = DieWatcher(engine.unix_url, run_id)
        names = [f"dmb-rules-{run_id}-{i:03d}" for i in range(args.count * len(PHASES))]
        ids, keys = start_containers(engine, tb.busybox_image, run_id, names, host, listener, args.parallel)
        time.sleep(1.0)

        phases, missed = {}, {}
        for number, rules in enumerate(PHASES):
            add_rules(rules, channel)
            time.sleep(1.0)
            a, b = [], []
            missed[rules] = 0
            part = slice(number * args.count, (number + 1) * args.count)
            for name, cid, key in zip(names[part], ids[part], keys[part], strict=True):
                t_cli = time.time_ns()
                ok = engine.docker("stop", "-t", "0", name, check=False, timeout=30).returncode == 0
                if not ok or not listener.wait(lambda key=key: key in listener.exited, args.timeout):
                    missed[rules] += 1
                    continue
                receipt_ns, _ = listener.exited[key]
                a.append((receipt_ns - t_cli) / 1e6)
                die_ns = watcher.get(cid[:12], 5)
                if die_ns is not None:
                    b.append((receipt_ns - die_ns) / 1e6)
            phases[rules] = {"cli_to_receipt_ms": _common.summarize(a), "die_to_receipt_ms": _common.summarize(b)}

        # Each stopped container is a new subject for every rule: one alert per rule and stop.
        expected = sum(rules * args.count for rules in PHASES)
        t_settle = time.monotonic()
        while Alert.objects.count() < expected and time.monotonic() - t_settle < args.settle:
            time.sleep(0.5)
        settle_s = time.monotonic() - t_settle
        alerts, notes = Alert.objects.count(), Notification.objects.count()
        elapsed = time.monotonic() - started
        print(f"event_latency_rules: {args.count} stops per phase on {args.engine}, db={_common.db_label(bench)}, "
              f"machine={_common.machine()}")
        for rules in PHASES:
            print(f"-- {rules} enabled container_stopped rules, one channel to a closed port ({missed[rules]} missed)")
            print(_common.fmt("(a) docker CLI start -> WS receipt", phases[rules]["cli_to_receipt_ms"]))
            print(_common.fmt("(b) engine die timeNano -> WS receipt", phases[rules]["die_to_receipt_ms"]))
        base = phases[0]["cli_to_receipt_ms"].get("p95")
        ratios = {r: round(phases[r]["cli_to_receipt_ms"].get("p95", 0) / base, 2) if base else None for r in PHASES[1:]}
        met = all(v is not None and v <= TARGET_RATIO for v in ratios.values()) and not any(missed.values())
        print(f"alerts raised: {alerts} of {expected} expected ({settle_s:.1f} s after the last stop), notifications: {notes}")
        print(f"(a) p95 with rules / without: {ratios}; target <= {TARGET_RATIO}: {'MET' if met else 'MISSED'}; "
              f"total {elapsed:.1f} s")
        _common.emit_summary({"bench": "event_latency_rules", "db": bench.vendor, "count": args.count, "worker": args.worker,
                              "phases": {str(r): phases[r] for r in PHASES}, "missed": missed, "alerts": alerts,
                              "alerts_expected": expected, "settle_seconds": round(settle_s, 1),
                              "notifications": notes, "p95_ratio": ratios, "target_met": met,
                              "seconds": round(elapsed, 1)})
        return 0 if met and alerts == expected else 1
    finally:
        close_up(bench, engine, run_id, listener, watcher)

if __name__ == "__main__":
    sys.exit(main())
