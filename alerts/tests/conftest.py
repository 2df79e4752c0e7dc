"""Fixtures for the alerts tests: a local HTTP receiver standing in for every notification
service (reached through each channel's base URL), a real SMTP server (aiosmtpd), Celery
tasks inline, and rows for a host and a container that need no engine."""

from __future__ import annotations

import http.server
import json
import threading
from urllib.parse import urlsplit

import pytest


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        parts = urlsplit(self.path)
        with server.lock:
            server.requests.append({"path": parts.path, "query": parts.query, "headers": dict(self.headers), "body": body, "raw": raw})
            script = server.scripts.get(parts.path) or []
            answer = script.pop(0) if script else (200, {})
        code, headers = answer[0], answer[1]
        if len(answer) > 2:  # (code, headers, body): the body a real service answers with
            payload = answer[2] if isinstance(answer[2], bytes) else json.dumps(answer[2]).encode()
        else:
            payload = b'{"ok": true}' if code < 300 else b'{"ok": false, "description": "scripted failure"}'
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_PUT = do_POST


class Receiver:
    """Records every request with its body; `script(path, [(code, headers[, body]), ...])` sets
    the answers a path gives, in order (then 200)."""

    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.requests = []
        self.httpd.scripts = {}
        self.httpd.lock = threading.Lock()
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, answers: list) -> None:
        self.httpd.scripts[path] = list(answers)

    @property
    def requests(self) -> list[dict]:
        return list(self.httpd.requests)

    def on(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""
    from aiosmtpd.controller import Controller

    from testkit.testing import free_port

    class Handler:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": envelope.content.decode()})
            return "250 Message accepted for delivery"

    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.messages = handler.messages
    yield controller
    controller.stop()


@pytest.fixture
def smtp_auth_server():
    """A real SMTP server that offers AUTH and refuses every login (535)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from testkit.testing import free_port

    class Handler:
        def __init__(self):
            self.messages = []
            self.logins = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope.content.decode())
            return "250 OK"

    handler = Handler()

    def authenticator(server, session, envelope, mechanism, auth_data):
        handler.logins.append((mechanism, getattr(auth_data, "login", b"").decode(errors="replace")))
        return AuthResult(success=False, handled=False)

    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    controller.handler_state = handler
    yield controller
    controller.stop()


@pytest.fixture
def eager():
    from dockmon_site.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    yield app
    app.conf.update(task_always_eager=before[0], task_eager_propagates=before[1])


@pytest.fixture
def rows(unique):
    """A host and a running container recorded in the database (no engine behind them)."""
    from containers.models import Container, DockerHost

    class Rows:
        host = DockerHost.objects.create(name=f"al-{unique}", url="unix:///nonexistent.sock", status="online")
        container = Container.objects.create(host=host, container_id=(unique * 8)[:64], short_id=(unique * 2)[:12],
                                             name=f"web-{unique}", state="running", image="demo/web:1")

    return Rows


def make_channel(kind: str, name: str | None = None, **config):
    from alerts.models import NotificationChannel
    from alerts.transports import transport_class

    secret = set(transport_class(kind).secret_fields)
    channel = NotificationChannel(name=name or f"{kind}-{len(config)}-{id(config)}", kind=kind,
                                  config={k: v for k, v in config.items() if k not in secret})
    channel.set_secrets({k: v for k, v in config.items() if k in secret})
    channel.save()
    return channel


def make_rule(kind: str, channels=(), **fields):
    from alerts.models import AlertRule

    rule = AlertRule.objects.create(name=fields.pop("name", kind), kind=kind, **fields)
    rule.channels.set(channels)
    return rule


def die(container, exit_code: int = 1, state: str = "exited"):
    """What the monitor emits when a running container dies."""
    from containers import bus
    from containers.models import Container

    Container.objects.filter(pk=container.pk).update(state=state, exit_code=exit_code)
    return bus.emit("container.state", category="container", host=container.host_id, container=container,
                    message=f"{container.name} exited with code {exit_code}",
                    data={"key": container.key, "state": state, "previous_state": "running", "exit_code": exit_code, "health": "none"})


def start(container, previous: str = "exited"):
    from containers import bus
    from containers.models import Container

    Container.objects.filter(pk=container.pk).update(state="running", exit_code=None)
    return bus.emit("container.state", category="container", host=container.host_id, container=container,
                    message=f"{container.name} is running",
                    data={"key": container.key, "state": "running", "previous_state": previous, "exit_code": None, "health": "none"})
