"""The connection layer of dockmon_site/outbound.py: pinned connections and the deadline.

- Pinned connections: urllib3 connections that resolve the host name through the policy
  (outbound.resolve_checked: every address checked) and connect to exactly a checked address,
  keeping the name for the Host header, SNI and certificate checks. There is no second lookup
  a rebinding DNS server could answer differently.
- The deadline: each request runs in a Context on its thread; every socket it opens is handed
  to one watchdog thread that shuts it down at the context's deadline, so a server that accepts
  and never answers, or drips its headers or body a byte at a time, is cut off.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import socket
import tempfile
import threading
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection


class Context:
    """One request in progress on the current thread."""

    def __init__(self, deadline: float):
        self.started = time.monotonic()
        self.deadline = deadline
        self.expired = False
        self.done = False
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.addresses: list[str] = []  # every address connected to

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        # shutdown() acts on the connection, not the descriptor: a duplicate lets the watchdog
        # cut the connection even after TLS wrapping has taken over the original object.
        try:
            dup = sock.dup()
        except OSError:
            return
        with self.lock:
            if self.done:
                dup.close()
                return
            self.sockets.append(dup)
        _watchdog.add(self.deadline, self, dup)

    def expire(self, dup: socket.socket) -> None:
        with self.lock:
            if self.done:
                return
            self.expired = True
            try:
                dup.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def finish(self) -> None:
        with self.lock:
            self.done = True
            for dup in self.sockets:
                try:
                    dup.close()
                except OSError:
                    pass
            self.sockets.clear()


class _Watchdog:
    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: float, ctx: Context, dup: socket.socket) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), ctx, dup))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="outbound-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline = self._heap[0][0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, ctx, dup = heapq.heappop(self._heap)
            ctx.expire(dup)


_watchdog = _Watchdog()
_local = threading.local()


@contextlib.contextmanager
def active(ctx: Context):
    previous = getattr(_local, "ctx", None)
    _local.ctx = ctx
    try:
        yield ctx
    finally:
        _local.ctx = previous


def _context() -> Context:
    ctx = getattr(_local, "ctx", None)
    if ctx is None:  # pragma: no cover - pinned sessions are only used inside outbound.request()
        raise RuntimeError("internal: an outbound connection outside outbound.request()")
    return ctx


class _PinnedConnectionMixin:
    def _new_conn(self):
        from dockmon_site.outbound import resolve_checked

        ctx = _context()
        addresses = resolve_checked(self._dns_host, self.port, ctx.remaining())
        last: Exception | None = None
        for address in addresses:
            try:
                sock = urllib3_connection.create_connection(
                    (address, self.port), self.timeout, source_address=self.source_address, socket_options=self.socket_options
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from exc
            except OSError as exc:
                last = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
                continue
            ctx.addresses.append(address)
            ctx.watch(sock)
            return sock
        raise last or NewConnectionError(self, "no address to connect to")


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection

    def _validate_conn(self, conn) -> None:
        # urllib3 warns on every unverified HTTPS request; a caller with verify=False chose
        # that, and catching the warning per call is not thread-safe. Same steps, no warning.
        HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()


class _PinnedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PinnedHTTPPool, "https": _PinnedHTTPSPool}

    def proxy_manager_for(self, *args, **kwargs):  # pragma: no cover - trust_env is off, no proxies given
        raise RuntimeError("outbound requests never use a proxy")


def pinned_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies, CA bundle or .netrc from the environment
    adapter = _PinnedAdapter(max_retries=0, pool_connections=1, pool_maxsize=1)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def ca_file(pem: str) -> str:
    """requests wants a path: keep one file per distinct CA text."""
    folder = Path(tempfile.gettempdir()) / "dockmon-outbound-ca"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(pem.encode()).hexdigest()[:32] + ".pem")
    if not path.exists():
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(pem)
        tmp.replace(path)
    return str(path)


def chain(exc: BaseException):
    """Every exception wrapped in `exc` (arguments, reasons, causes, contexts)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        for arg in getattr(exc, "args", ()):
            if isinstance(arg, BaseException):
                yield from chain(arg)
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException):
            yield from chain(reason)
        exc = exc.__cause__ or exc.__context__


def innermost(exc: BaseException) -> BaseException:
    last = exc
    for last in chain(exc):  # noqa: B007 - the last one is what we want
        pass
    return last


def short(exc: BaseException | str, limit: int = 300) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
