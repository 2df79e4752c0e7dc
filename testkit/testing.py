"""Shared test helpers: running DockMon's own processes (daphne, monitor) against the test
database, waiting for conditions, and a small WebSocket client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, message="condition"):
    """Poll predicate() until it returns something truthy; fail the test with `message` if not
    (a callable message is called then, e.g. to read a process log at the time of the failure)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    if callable(message):
        message = message()
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")


@contextlib.contextmanager
def eager_tasks(app, propagate: bool = True):
    """Celery runs every apply_async inline while inside (errors raised when `propagate`)."""
    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.update(task_always_eager=True, task_eager_propagates=propagate)
    try:
        yield app
    finally:
        app.conf.update(task_always_eager=before[0], task_eager_propagates=before[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """A DATABASE_URL that points a subprocess at the database this test run uses."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env["DATABASE_URL"] = test_database_url()
    env["DJANGO_SETTINGS_MODULE"] = "dockmon_site.settings"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


class ManagedProcess:
    """A child process that is always stopped (by pid) when the test is done."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name = name
        self.argv = argv
        self.env = env
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=BASE_DIR, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""


def log_dir() -> Path:
    return Path(settings.DATA_DIR) / "test-logs"


def start_monitor(**env) -> ManagedProcess:
    defaults = {"DOCKMON_HOST_REFRESH_SECONDS": "0.3", "DOCKMON_BACKOFF_INITIAL_SECONDS": "0.2", "DOCKMON_BACKOFF_MAX_SECONDS": "1"}
    defaults.update(env)
    argv = [sys.executable, "manage.py", "monitor"]
    if "SHARD" in defaults:
        argv += ["--shard", defaults.pop("SHARD")]
    return ManagedProcess("monitor", argv, subprocess_env(**defaults), log_dir()).start()


def start_daphne(port: int, *, name: str = "daphne", timeout: float = 20, **env) -> ManagedProcess:
    """daphne serving DockMon on 127.0.0.1:port against the test database (`env` added to its
    environment); returns once it listens."""
    argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "dockmon_site.asgi:application"]
    process = ManagedProcess(name, argv, subprocess_env(**env), log_dir()).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"daphne exited: {process.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.stop()
    raise RuntimeError(f"daphne did not listen on {port}: {process.log()}")


def sign_in(page, base: str, username: str, password: str) -> None:
    """Sign in through DockMon's login form on a Playwright page (base: the site's root URL)."""
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


class WSClient:
    """A blocking WebSocket client that collects messages and can wait for a matching one."""

    def __init__(self, url: str, headers: dict | None = None):
        from websockets.sync.client import connect

        self._context = connect(url, additional_headers=headers or {}, open_timeout=10, max_size=None)
        self.ws = self._context.__enter__()
        self.messages: list[dict] = []

    def recv(self, timeout: float) -> dict | None:
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        message = json.loads(raw)
        self.messages.append(message)
        return message

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        for message in self.messages:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.recv(left)
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"no matching WebSocket message within {timeout}s; got types {[m['type'] for m in self.messages][-30:]}")

    def drain(self, seconds: float) -> list[dict]:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.recv(left)
        return self.messages

    def send(self, data: dict) -> None:
        self.ws.send(json.dumps(data))

    def close(self) -> None:
        self._context.__exit__(None, None, None)
