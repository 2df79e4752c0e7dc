"""Local HTTP endpoints for health-check tests, all on 127.0.0.1 in the test process: a small
threaded server with a few behaviours, and a socket that accepts and never answers."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        server = self.server
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        server.requests.append({"method": self.command, "path": parts.path, "headers": dict(self.headers)})
        if parts.path == "/status":
            return self._send(int(query.get("code", "200")), b"status page")
        if parts.path == "/redirect":
            return self._send(int(query.get("code", "302")), b"", {"Location": query["to"]})
        if parts.path == "/loop":
            return self._send(302, b"", {"Location": "/loop"})
        if parts.path == "/drip":
            # A body that never finishes: one byte at a time, each well within a read timeout.
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return None
        if parts.path == "/big":
            # `size` bytes of filler, then `tail` (a keyword beyond a small body cap).
            return self._send(200, b"x" * int(query.get("size", "100000")) + query.get("tail", "").encode())
        if parts.path == "/flip":
            return self._send(200 if server.healthy else 503, b"flip ok" if server.healthy else b"down")
        return self._send(200, b"hello, all good")

    do_GET = do_HEAD = do_POST = _handle


class LocalServer:
    def __init__(self, tls: dict | None = None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.requests = []
        self.httpd.healthy = True
        self.scheme = "http"
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls["server_cert"], tls["server_key"])
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    @property
    def requests(self) -> list[dict]:
        return self.httpd.requests

    def set_healthy(self, value: bool) -> None:
        self.httpd.healthy = value

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class HangingServer:
    """Accepts connections and never answers (holds them until closed)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self._stop = True
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture(autouse=True)
def _recorder_lets_go_of_the_database():
    """The runner's recorder thread holds its own connection; release it after each test so the
    test database can be flushed or dropped."""
    yield
    from healthchecks import runner

    runner.close_db()


@pytest.fixture
def local_server():
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture
def tls_server(testbed):
    server = LocalServer(tls=testbed.tls)
    yield server
    server.close()


@pytest.fixture
def hanging_server():
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture
def connect_spy(monkeypatch):
    """Records every TCP connection attempt of the process (a spy: connections still happen)."""
    attempts: list = []
    original = socket.socket.connect

    def connect(self, address):
        attempts.append(address)
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def eager():
    """Celery tasks run inline (CELERY_TASK_ALWAYS_EAGER), as in the test settings of CI."""
    from dockmon_site.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    yield app
    app.conf.update(task_always_eager=before[0], task_eager_propagates=before[1])


@pytest.fixture
def httpd_container(alpha, containers_to_remove, unique):
    """A real busybox httpd in a host-network container on alpha, serving /www/index.html on a
    free 127.0.0.1 port. Returns (container id, port, name)."""
    from testkit.testing import free_port

    def start(text: str = "service-ok"):
        port = free_port()
        name = f"hc-httpd-{unique}-{port}"
        containers_to_remove.append((alpha, name))
        script = f"mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
        cid = alpha.docker("run", "-d", "--network", "host", "--stop-timeout", "1", "--name", name,
                           "dockmon/busybox:latest", "sh", "-c", script).stdout.strip()
        return cid, port, name

    return start


def run_once(*checks):
    """Make the checks due now and run them through the real claim + run path; the results."""
    from django.utils import timezone

    from healthchecks import services
    from healthchecks.models import HealthCheck

    ids = [c.pk for c in checks]
    HealthCheck.objects.filter(pk__in=ids).update(next_due_at=timezone.now())
    owner, claimed = services.claim_due(limit=1000)
    assert set(ids) <= set(claimed), (ids, claimed)
    others = sorted(set(claimed) - set(ids))
    services.release(others, owner)
    results = services.run_claimed(ids, owner, wait=True)
    for check in checks:
        check.refresh_from_db()
    return [result for _, result in results]
