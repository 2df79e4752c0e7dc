"""The health probe: the only code in this app that makes HTTP requests.

Guarantees, whatever the target does:
- It never talks to a link-local or cloud-metadata address. The host name is resolved here and
  every address checked *before* any connection; the TCP connection then goes to exactly the
  address that was checked (no second lookup that a rebinding DNS server could answer
  differently). Redirects are followed here, one hop at a time, each hop checked the same way.
- It never takes longer than the check's timeout in total: connect and read timeouts are
  bounded by what is left, and a watchdog shuts the socket down at the deadline, so a server
  that accepts and never answers, or drips its headers or body a byte at a time, is cut off.
- It reads at most `body_limit` bytes of the body.
- It ignores the environment (proxies, REQUESTS_CA_BUNDLE, .netrc): `trust_env = False`.

probe(spec) never raises: it returns a ProbeResult with `ok` and a readable `error`.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import itertools
import re
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection

MAX_REDIRECTS = 5
DEFAULT_BODY_LIMIT = 64 * 1024
USER_AGENT = "DockMon-HealthCheck/1.0"
REDIRECT_CODES = (301, 302, 303, 307, 308)

# Addresses a health check may never reach. Loopback and private ranges are allowed on purpose:
# that is where containers live. Link-local is where every cloud keeps its metadata service
# (credentials!), so the whole range is refused, plus the few metadata addresses elsewhere.
BLOCKED_NETWORKS = [
    (ipaddress.ip_network("169.254.0.0/16"), "link-local (cloud metadata) address"),
    (ipaddress.ip_network("fe80::/10"), "IPv6 link-local address"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "the AWS metadata service (IPv6)"),
    (ipaddress.ip_network("100.100.100.200/32"), "the Alibaba Cloud metadata service"),
    (ipaddress.ip_network("224.0.0.0/4"), "multicast address"),
    (ipaddress.ip_network("ff00::/8"), "IPv6 multicast address"),
    (ipaddress.ip_network("0.0.0.0/8"), "unspecified address"),
    (ipaddress.ip_network("::/128"), "unspecified address"),
]
BLOCKED_NAMES = {
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "metadata.platformequinix.com",
    "instance-data",
    "instance-data.ec2.internal",
}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class ProbeRefused(Exception):
    """The target is not allowed (metadata / link-local address). Deliberately not an OSError,
    so that urllib3 and requests let it through unchanged instead of retrying or wrapping it."""


# ---------------------------------------------------------------------------
# Expected status: "200-299,301"
# ---------------------------------------------------------------------------
_PART = re.compile(r"^(\d{3})(?:-(\d{3}))?$")


def parse_status_spec(text: str) -> tuple[tuple[int, int], ...]:
    """Parse a status spec strictly; raises ValueError with a message fit for the user."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("Give at least one status code, e.g. 200 or 200-299,301.")
    ranges = []
    for raw in text.split(","):
        part = raw.strip()
        match = _PART.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a status code or a range like 200-299.")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        for code in (low, high):
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599).")
        if low > high:
            raise ValueError(f"The range {part} runs backwards.")
        ranges.append((low, high))
    return tuple(ranges)


def status_matches(code: int | None, ranges: tuple[tuple[int, int], ...]) -> bool:
    return code is not None and any(low <= code <= high for low, high in ranges)


# ---------------------------------------------------------------------------
# Target checks
# ---------------------------------------------------------------------------
def blocked_reason(address: str) -> str | None:
    """Why an IP address may not be probed, or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 hidden inside IPv6 (mapped, 6to4, NAT64) reaches the same IPv4 host.
        if ip.ipv4_mapped:
            candidates.append(ip.ipv4_mapped)
        if ip.sixtofour:
            candidates.append(ip.sixtofour)
        if ip in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    for candidate in candidates:
        for network, label in BLOCKED_NETWORKS:
            if candidate.version == network.version and candidate in network:
                return label
    return None


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def validate_url(url: str) -> str:
    """Check a URL's form and literal target; raises ValueError with a clear message.

    Names are not resolved here (that happens, and is enforced, at every connection)."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("Give a URL, e.g. http://127.0.0.1:8080/health.")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"Not a valid URL: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("Only http:// and https:// URLs can be checked.")
    if not parts.hostname:
        raise ValueError("The URL has no host.")
    if parts.username or parts.password:
        raise ValueError("Put credentials in the basic-auth fields, not in the URL.")
    if port == 0:
        raise ValueError("Port 0 cannot be checked.")
    host = _normal_host(parts.hostname)
    if host in BLOCKED_NAMES:
        raise ValueError(f"{host} is a cloud metadata service; health checks may not reach it.")
    reason = blocked_reason(host)
    if reason:
        raise ValueError(f"{host} is a {reason}; health checks may not reach it.")
    return url


_dns_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe-dns")


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def resolve(host: str, port: int, timeout: float) -> list[str]:
    """The addresses to connect to, all checked; raises ProbeRefused or OSError.

    A name that resolves to any refused address is refused as a whole: a name mixing a
    metadata address with others is an attack, not a configuration."""
    name = _normal_host(host)
    if name in BLOCKED_NAMES:
        raise ProbeRefused(f"Refused: {name} is a cloud metadata service.")
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
        addresses = [name]
    except ValueError:
        # getaddrinfo has no timeout of its own: run it aside and stop waiting at the deadline.
        future = _dns_pool.submit(_getaddrinfo, name, port)
        try:
            addresses = future.result(timeout=max(timeout, 0.01))
        except FutureTimeout:
            raise OSError(f"resolving {name} took longer than {timeout:.1f}s") from None
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {name}: {exc.strerror or exc}") from None
    for address in addresses:
        reason = blocked_reason(address)
        if reason:
            shown = name if name == address else f"{name} resolves to {address}, which"
            raise ProbeRefused(f"Refused: {shown} is a {reason}; nothing was sent.")
    if not addresses:
        raise OSError(f"{name} has no address")
    return addresses


# ---------------------------------------------------------------------------
# The deadline: one watchdog thread shuts down sockets whose probe ran out of time
# ---------------------------------------------------------------------------
class _Context:
    """One probe in progress on the current thread."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.expired = False
        self.done = False
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.addresses: list[str] = []  # every address connected to (for tests and errors)

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

    def add(self, deadline: float, ctx: _Context, dup: socket.socket) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), ctx, dup))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="probe-watchdog", daemon=True)
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


def _context() -> _Context:
    ctx = getattr(_local, "ctx", None)
    if ctx is None:  # pragma: no cover - the pinned pools are only mounted by probe()
        raise ProbeRefused("internal: no probe context")
    return ctx


# ---------------------------------------------------------------------------
# Pinned connections: connect to the checked address, keep the name for Host/SNI/certificate
# ---------------------------------------------------------------------------
class _PinnedConnectionMixin:
    def _new_conn(self):
        ctx = _context()
        addresses = resolve(self._dns_host, self.port, ctx.remaining())
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
        # urllib3 warns on every unverified HTTPS request; a check with verify_tls=False chose
        # that, and catching the warning per call is not thread-safe. Same steps, no warning.
        HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()


class _PinnedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PinnedHTTPPool, "https": _PinnedHTTPSPool}


# ---------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------
@dataclass
class ProbeSpec:
    url: str
    method: str = "GET"
    expected_status: str = "200-399"
    body_keyword: str = ""
    headers: dict = field(default_factory=dict)
    basic_auth_user: str = ""
    basic_auth_password: str = ""
    timeout: float = 10.0
    follow_redirects: bool = True
    verify_tls: bool = True
    tls_ca: str = ""
    body_limit: int = DEFAULT_BODY_LIMIT

    @classmethod
    def for_check(cls, check, body_limit: int = DEFAULT_BODY_LIMIT) -> ProbeSpec:
        return cls(
            url=check.url,
            method=check.method,
            expected_status=check.expected_status,
            body_keyword=check.body_keyword,
            headers=check.header_dict,
            basic_auth_user=check.basic_auth_user,
            basic_auth_password=check.basic_auth_password or "",
            timeout=float(check.timeout_seconds),
            follow_redirects=check.follow_redirects,
            verify_tls=check.verify_tls,
            tls_ca=check.tls_ca,
            body_limit=body_limit,
        )


@dataclass
class ProbeResult:
    ok: bool
    status_code: int | None = None
    response_ms: int | None = None
    error: str = ""
    url: str = ""
    redirects: int = 0
    addresses: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "status_code": self.status_code, "response_ms": self.response_ms, "error": self.error,
                "url": self.url, "redirects": self.redirects}


def _ca_file(pem: str) -> str:
    """requests wants a path: keep one file per distinct CA text."""
    folder = Path(tempfile.gettempdir()) / "dockmon-probe-ca"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(pem.encode()).hexdigest()[:32] + ".pem")
    if not path.exists():
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(pem)
        tmp.replace(path)
    return str(path)


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme, _normal_host(parts.hostname or ""), parts.port or (443 if parts.scheme == "https" else 80)


def _reason(exc: BaseException, ctx: _Context, timeout: float) -> str:
    if ctx.expired:
        return f"Timed out: no complete response within {timeout:g}s."
    for inner in _chain(exc):
        if isinstance(inner, ProbeRefused):
            return str(inner)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"Timed out connecting (limit {timeout:g}s)."
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"Timed out: no response within {timeout:g}s."
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {_short(_innermost(exc))}"
    text = " ".join(str(inner) for inner in _chain(exc))
    if "Connection refused" in text:
        return "Connection refused."
    if "timed out" in text.lower():
        return f"Timed out (limit {timeout:g}s)."
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"Connection failed: {_short(_innermost(exc))}"
    return f"Request failed: {_short(exc)}"


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        for arg in getattr(exc, "args", ()):
            if isinstance(arg, BaseException):
                yield from _chain(arg)
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException):
            yield from _chain(reason)
        exc = exc.__cause__ or exc.__context__


def _innermost(exc: BaseException) -> BaseException:
    last = exc
    for last in _chain(exc):  # noqa: B007 - the last one is what we want
        pass
    return last


def _short(exc: BaseException | str, limit: int = 300) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def probe(spec: ProbeSpec) -> ProbeResult:
    """Run one HTTP check against spec.url; never raises."""
    started = time.monotonic()
    ctx = _Context(started + spec.timeout)
    try:
        ranges = parse_status_spec(spec.expected_status)
        validate_url(spec.url)
    except ValueError as exc:
        return ProbeResult(ok=False, error=f"Invalid check: {exc}", url=spec.url)

    session = requests.Session()
    session.trust_env = False  # no proxies, CA bundle or .netrc from the environment
    adapter = _PinnedAdapter(max_retries=0, pool_connections=1, pool_maxsize=1)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if not spec.verify_tls:
        verify: bool | str = False
    elif spec.tls_ca.strip():
        verify = _ca_file(spec.tls_ca)
    else:
        verify = True
    first_origin = _origin(spec.url)
    url, method, redirects = spec.url, spec.method.upper(), 0
    result = ProbeResult(ok=False, url=url)
    _local.ctx = ctx
    try:
        while True:
            same_origin = _origin(url) == first_origin
            headers = {"User-Agent": USER_AGENT}
            if same_origin:  # never hand credentials to another host a redirect points at
                headers.update(spec.headers)
            auth = (spec.basic_auth_user, spec.basic_auth_password) if spec.basic_auth_user and same_origin else None
            left = ctx.remaining()
            if left <= 0:
                raise TimeoutError
            response = session.request(
                method, url, headers=headers, auth=auth, allow_redirects=False, stream=True, verify=verify, timeout=(left, left)
            )
            if spec.follow_redirects and response.status_code in REDIRECT_CODES and response.headers.get("location"):
                response.close()
                if redirects >= MAX_REDIRECTS:
                    result.status_code = response.status_code
                    result.error = f"More than {MAX_REDIRECTS} redirects."
                    break
                target = urljoin(url, response.headers["location"])
                try:
                    validate_url(target)
                except ValueError as exc:
                    result.status_code = response.status_code
                    result.error = f"Refused redirect to {target}: {exc}"
                    break
                if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                    method = "GET"
                url, redirects = target, redirects + 1
                continue
            result.status_code = response.status_code
            body = b""
            try:
                if method != "HEAD":
                    chunks, size = [], 0
                    for chunk in response.iter_content(8192):
                        chunks.append(chunk)
                        size += len(chunk)
                        if size >= spec.body_limit or ctx.remaining() <= 0:
                            break
                    body = b"".join(chunks)[: spec.body_limit]
                if ctx.expired or ctx.remaining() < 0:
                    raise TimeoutError
            finally:
                response.close()
            if not status_matches(response.status_code, ranges):
                result.error = f"Status {response.status_code} is not one of {spec.expected_status}."
            elif spec.body_keyword and spec.body_keyword.encode() not in body:
                result.error = f"{spec.body_keyword!r} was not found in the response body (first {spec.body_limit // 1024} KiB)."
            else:
                result.ok = True
            break
    except TimeoutError:
        result.error = f"Timed out: no complete response within {spec.timeout:g}s."
    except ProbeRefused as exc:
        result.error = str(exc)
    except Exception as exc:  # every failure of the target is a result, never a crash
        result.error = _reason(exc, ctx, spec.timeout)
    finally:
        _local.ctx = None
        ctx.finish()
        session.close()
    if ctx.expired and result.ok is False and not result.error.startswith("Timed out"):
        result.error = f"Timed out: no complete response within {spec.timeout:g}s."
    result.url = url
    result.redirects = redirects
    result.addresses = list(ctx.addresses)
    result.response_ms = int((time.monotonic() - started) * 1000)
    return result

