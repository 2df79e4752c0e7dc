"""Private Redis and PostgreSQL servers for the fault-tolerance tests, and DockMon's worker and
beat processes pointed at them.

A test that restarts Redis or PostgreSQL must not restart the machine's shared servers (the
test suite itself and other processes use them): these start their own on free loopback ports,
in a folder of their own, and are stopped by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testkit import testing

LOOPBACK = "127.0.0.1"


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} within {timeout}s")


class PrivateRedis:
    """redis-server on a free port, keeping nothing on disk (like the product's Redis)."""

    def __init__(self):
        self.port = testing.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dockmon-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def ping(self) -> bool:
        res = subprocess.run(["redis-cli", "-h", LOOPBACK, "-p", str(self.port), "ping"], capture_output=True, text=True, timeout=5)
        return res.stdout.strip() == "PONG"

    def start(self) -> PrivateRedis:
        argv = ["redis-server", "--bind", LOOPBACK, "--port", str(self.port), "--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        _wait(self.ping, 15, f"redis did not answer on {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return str(found[-1])


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb, trust on loopback) on a free port.

    Run as the `postgres` system user when this process is root (PostgreSQL refuses root)."""

    def __init__(self):
        self.port = testing.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dockmon-pg-"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        if self._as_postgres:
            argv = ("runuser", "-u", "postgres", "--", *argv)
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {res.stderr.strip() or res.stdout.strip()}")
        return res

    def init(self) -> PrivatePostgres:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses={LOOPBACK} -c fsync=off"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "pg.log"), "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._run("psql", "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres", "-d", database, "-At", "-c", statement).stdout

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def start_worker(env: dict, *, queues: str | None = None, name: str = "worker") -> testing.ManagedProcess:
    # The pool DockMon runs with (docker/entrypoint.sh, scripts/run.sh): threads.
    argv = [sys.executable, "-m", "celery", "-A", "dockmon_site", "worker", "--pool", "threads", "-c", "4", "-l", "info", "--without-heartbeat",
            "--without-gossip", "--without-mingle", "-n", f"{name}-{os.getpid()}@%h"]
    if queues:
        argv += ["-Q", queues]
    return testing.ManagedProcess(name, argv, testing.subprocess_env(**env), testing.log_dir()).start()


def start_beat(env: dict) -> testing.ManagedProcess:
    schedule_dir = Path(tempfile.mkdtemp(prefix="dockmon-beat-"))
    argv = [sys.executable, "-m", "celery", "-A", "dockmon_site", "beat", "-l", "info", "--pidfile=",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "-s", str(schedule_dir / "schedule")]
    return testing.ManagedProcess("beat", argv, testing.subprocess_env(**env), testing.log_dir()).start()


def start_daphne(port: int, env: dict) -> testing.ManagedProcess:
    return testing.start_daphne(port, timeout=30, **env)
