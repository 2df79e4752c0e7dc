"""Local HTTP servers that stand in for what DockMon calls out to (notification services, checked
endpoints, webhooks, pages of other sites): threaded, bound to 127.0.0.1 only, recording every
request. The root conftest.py hands them to tests as fixtures and closes them afterwards."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
import time
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = owner.record(raw, method=self.command, path=parts.path, query=parts.query, headers=dict(self.headers))
        with owner.lock:
            owner._requests.append(request)
        answer = owner.answer(self, request)
        if answer is not None:
            self.send(*answer)

    def send(self, code: int, headers: dict | None = None, body: bytes = b"") -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = _handle


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (a free port, or `port`) that records each request as
    {method, path, query, headers, body (text)} and answers with `answer(request)`:
    (code, headers, body). Subclasses answer through the `answer(handler, request)` method,
    which may also write the response itself and return None."""

    def __init__(self, answer=None, *, port: int = 0, tls: dict | None = None):
        self._answer = answer
        self._requests: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer((LOOPBACK, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.scheme = "http"
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls["server_cert"], tls["server_key"])
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.addr = f"{LOOPBACK}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, handler, request: dict):
        return self._answer(request) if self._answer else (200, {}, b"")

    def record(self, raw: bytes, **request) -> dict:
        # Text only, so that a test can look for a secret in json.dumps(server.requests).
        return {**request, "body": raw.decode(errors="replace")}

    def url(self, path: str = "/", host: str = LOOPBACK) -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    @property
    def requests(self) -> list[dict]:
        """What was received so far (a copy: later requests do not change it)."""
        with self.lock:
            return list(self._requests)

    def on(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    stop = close

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Receiver(LoopbackServer):
    """A notification service (webhook, Pushover, Slack, ntfy, Telegram...): bodies are read as
    JSON where they are JSON (the bytes as sent under "raw"); `script(path, [(code, headers[, body]), ...])` sets the answers a
    path gives, in order (then 200 `{"ok": true}`)."""

    def __init__(self, **kwargs):
        self.scripts: dict[str, list] = {}
        super().__init__(**kwargs)

    def record(self, raw: bytes, **request) -> dict:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        return {**request, "body": body, "raw": raw}

    def script(self, path: str, answers: list) -> None:
        self.scripts[path] = list(answers)

    def answer(self, handler, request: dict):
        with self.lock:
            script = self.scripts.get(request["path"]) or []
            answer = script.pop(0) if script else (200, {})
        code, headers = answer[0], answer[1]
        if len(answer) > 2:  # (code, headers, body): the body a real service answers with
            payload = answer[2] if isinstance(answer[2], bytes) else json.dumps(answer[2]).encode()
        else:
            payload = b'{"ok": true}' if code < 300 else b'{"ok": false, "description": "scripted failure"}'
        return code, {**headers, "Content-Type": "application/json"}, payload


class WebService(LoopbackServer):
    """A web endpoint with a few behaviours, chosen by path:
    /status?code=N, /redirect?to=URL[&code=N], /loop (redirects to itself), /drip (a body that
    never finishes, a byte every 0.2 s), /big?size=N[&tail=TEXT], /flip (200 or 503, see
    `set_healthy`), /json; anything else is 200 "hello, all good"."""

    def __init__(self, **kwargs):
        self.healthy = True
        super().__init__(**kwargs)

    def set_healthy(self, value: bool) -> None:
        self.healthy = value

    def answer(self, handler, request: dict):
        path = request["path"]
        query = {k: v[0] for k, v in parse_qs(request["query"]).items()}
        if path == "/status":
            return int(query.get("code", "200")), {}, b"status page"
        if path == "/redirect":
            return int(query.get("code", "302")), {"Location": query["to"]}, b""
        if path == "/loop":
            return 302, {"Location": "/loop"}, b""
        if path == "/drip":
            self._drip(handler)
            return None
        if path == "/big":
            # `size` bytes of filler, then `tail` (a keyword beyond a small body cap).
            return 200, {}, b"x" * int(query.get("size", "100000")) + query.get("tail", "").encode()
        if path == "/flip":
            return (200, {}, b"flip ok") if self.healthy else (503, {}, b"down")
        if path == "/json":
            return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
        return 200, {}, b"hello, all good"

    @staticmethod
    def _drip(handler) -> None:
        # Each byte comes well within a read timeout; the whole body never does.
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        try:
            for _ in range(100000):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass


class HangingServer:
    """Accepts connections on 127.0.0.1 and never answers (holds them until closed)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
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
        return f"http://{LOOPBACK}:{self.port}{path}"

    def close(self):
        self._stop = True
        self.sock.close()
        for conn in self.accepted:
            conn.close()
