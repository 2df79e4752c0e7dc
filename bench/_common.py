"""Shared plumbing for the benchmarks in this folder (not a benchmark itself).

Every benchmark calls ``setup(name, args)`` before it imports anything from Django: it sets the
environment (own data dir /tmp/dockmon-bench-<name>/run-<pid>, Redis db 13, a unique channel prefix, a secret key), points Django at
a fresh SQLite file or at ``--database-url`` (PostgreSQL; the database is created if missing and
emptied with ``flush``), runs ``migrate`` and returns. ``Proc`` starts DockMon's own processes
(daphne, monitor) against the same database and stops them by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BENCH_REDIS_URL = "redis://127.0.0.1:6379/13"

if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--database-url",
        default="",
        help="postgres://user@127.0.0.1:5432/NAME (created if missing, then EMPTIED; the name must contain 'bench'). "
        "Default: a fresh SQLite file under the benchmark's data dir.",
    )
    p.add_argument("--keep-data", action="store_true", help="Leave the data dir (logs, SQLite file) in place afterwards")
    return p


class Bench:
    """What setup() prepared: names, paths and the environment for child processes."""

    def __init__(self, name: str, args):
        self.name = name
        self.args = args
        self.run_id = uuid.uuid4().hex[:8]
        # One folder per run, so that two runs of the same benchmark never share a SQLite file.
        self.base_dir = Path(f"/tmp/dockmon-bench-{name}")
        self.data_dir = self.base_dir / f"run-{os.getpid()}"
        self.log_dir = self.data_dir / "logs"
        self.database_url = args.database_url
        self.vendor = "postgresql" if self.database_url else "sqlite"
        self.procs: list[Proc] = []

    # -------------------------------------------------------------- child processes
    def child_env(self, **extra) -> dict:
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = "dockmon_site.settings"
        env["PYTHONUNBUFFERED"] = "1"
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        else:
            # The children use the default SQLite settings (WAL, 30 s busy timeout, IMMEDIATE
            # transactions) on the same file, exactly like a plain `make run` install; a
            # DATABASE_URL=sqlite:///... would drop those options (see BENCHMARKS.md).
            env.pop("DATABASE_URL", None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start(self, name: str, argv: list[str], **env) -> Proc:
        proc = Proc(name, argv, self.child_env(**env), self.log_dir)
        self.procs.append(proc)
        return proc.start()

    def start_daphne(self, port: int | None = None) -> Proc:
        port = port or free_port()
        proc = self.start("daphne", [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "dockmon_site.asgi:application"])
        proc.port = port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"daphne exited: {proc.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return proc
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"daphne did not listen on {port}: {proc.log()}")

    def start_monitor(self, *args: str, **env) -> Proc:
        return self.start("monitor", [PYTHON, "manage.py", "monitor", *args], **env)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                print(f"[bench] could not stop {proc.name} ({proc.pid}): {exc}", file=sys.stderr)

    def finish(self) -> None:
        self.stop_all()
        if not self.args.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            try:
                self.base_dir.rmdir()  # only when no other run is using it
            except OSError:
                pass


class Proc:
    """One child process in its own session; stopped by its pid (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = None

    def start(self) -> Proc:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.argv, cwd=BASE_DIR, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log and not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def log(self, chars: int = 5000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# ------------------------------------------------------------------ setup


def _prepare_postgres(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to use database {name!r}: benchmarks empty their database, use a name with 'bench' in it")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup(name: str, args) -> Bench:
    """Environment + django.setup() + migrate on an empty database. Call before importing models."""
    bench = Bench(name, args)
    if bench.data_dir.exists():
        shutil.rmtree(bench.data_dir)
    bench.data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["DOCKMON_DATA_DIR"] = str(bench.data_dir)
    os.environ["REDIS_URL"] = BENCH_REDIS_URL
    os.environ["DOCKMON_CHANNEL_PREFIX"] = f"dmbench{name.replace('_', '')}{os.getpid()}"
    os.environ["SECRET_KEY"] = "bench-secret-key-not-for-production-" + "x" * 20
    os.environ["DJANGO_SETTINGS_MODULE"] = "dockmon_site.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        os.environ.pop(var, None)
    if bench.database_url:
        _prepare_postgres(bench.database_url)
        os.environ["DATABASE_URL"] = bench.database_url
    else:
        os.environ.pop("DATABASE_URL", None)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    if bench.database_url:
        call_command("flush", verbosity=0, interactive=False)
    return bench


# ------------------------------------------------------------------ figures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(-(-pct * len(ordered) // 100)))  # ceil(pct/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


def summarize(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"n": 0}
    return {
        "n": len(values_ms),
        "min": round(min(values_ms), 2),
        "p50": round(percentile(values_ms, 50), 2),
        "p95": round(percentile(values_ms, 95), 2),
        "max": round(max(values_ms), 2),
        "mean": round(statistics.fmean(values_ms), 2),
    }


def fmt(label: str, stats: dict, unit: str = "ms") -> str:
    if not stats.get("n"):
        return f"{label:<44} (no samples)"
    return (
        f"{label:<44} n={stats['n']:<4} p50={stats['p50']:>8.2f} p95={stats['p95']:>8.2f} "
        f"max={stats['max']:>8.2f} min={stats['min']:>8.2f} {unit}"
    )


def machine() -> dict:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    load = ",".join(f"{x:.2f}" for x in os.getloadavg())
    return {"cpus": os.cpu_count(), "mem": mem, "python": platform.python_version(), "kernel": platform.release(), "loadavg": load}


def revision() -> str:
    """The commit measured, with "+dirty" when product files (outside bench/) have uncommitted edits."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=BASE_DIR,
                                capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = any(not line[3:].startswith(("bench/", "BENCHMARKS.md")) for line in status)
    return (head or "unknown") + ("+dirty" if dirty else "")


def db_label(bench: Bench) -> str:
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            return f"postgresql {cur.fetchone()[0]}"
    import sqlite3

    return f"sqlite {sqlite3.sqlite_version}"


def emit_summary(payload: dict) -> None:
    payload.setdefault("revision", revision())
    payload.setdefault("loadavg", machine()["loadavg"])
    print(f"revision {payload['revision']}, load average at the end {payload['loadavg']}", flush=True)
    print("JSON " + json.dumps(payload, sort_keys=True, separators=(",", ":")), flush=True)


def iso_to_ns(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


class StampedSocket:
    """DockMon's event WebSocket read in a thread: each message is stamped on receipt
    (time.time_ns()) and handed to `on_message(msg, now)` under `cond`, which is then notified.
    A subclass sets up its own state before calling this __init__ (the thread starts here)."""

    def __init__(self, url: str):
        from websockets.sync.client import connect

        self._context = connect(url, open_timeout=10, max_size=None)
        self.ws = self._context.__enter__()
        self.cond = threading.Condition()
        self.count = 0
        self.thread = threading.Thread(target=self._run, name="ws-listener", daemon=True)
        self.thread.start()

    def on_message(self, msg: dict, now: int) -> None:
        pass

    def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                raw = self.ws.recv()
                now = time.time_ns()
                msg = json.loads(raw)
                with self.cond:
                    self.count += 1
                    self.on_message(msg, now)
                    self.cond.notify_all()
        except (ConnectionClosed, OSError):
            pass

    def wait(self, predicate, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def close(self) -> None:
        try:
            self._context.__exit__(None, None, None)
        except Exception:
            pass
        self.thread.join(5)


class DieEvents:
    """An engine's own `die` events (timeNano) for the containers labelled `label=run_id`, from a
    separate SDK stream read in a thread: `on_die(short_id, ns)` runs under `cond`, which is then
    notified. A subclass sets up its own state before calling this __init__."""

    def __init__(self, unix_url: str, label: str, run_id: str):
        import docker

        self.client = docker.DockerClient(base_url=unix_url, version="1.41", timeout=30)
        self.client.api.trust_env = False
        self.stream = self.client.events(decode=True, since=int(time.time()) - 1,
                                         filters={"type": "container", "event": "die", "label": f"{label}={run_id}"})
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="die-watcher", daemon=True)
        self.thread.start()

    def on_die(self, short_id: str, ns: int) -> None:
        pass

    def _run(self) -> None:
        try:
            for event in self.stream:
                cid = (event.get("Actor") or {}).get("ID") or event.get("id") or ""
                with self.cond:
                    self.on_die(cid[:12], int(event["timeNano"]))
                    self.cond.notify_all()
        except Exception:
            pass

    def close(self) -> None:
        for closer in (self.stream.close, self.client.close):
            try:
                closer()
            except Exception:
                pass
