"""The one policy for every outbound HTTP request DockMon makes on someone's behalf.

Health checks, notification channels (webhooks, base URLs, SMTP), registry token realms and the
redirects any of them answer with all go through here. Nothing else in DockMon opens an HTTP
connection to a URL a user typed.

What is refused (module `Refused`, a ValueError; nothing is sent):
- link-local (169.254/16, fe80::/10, which is where clouds keep their metadata service), the
  metadata addresses outside it, multicast and unspecified addresses, and the metadata host
  names (BLOCKED_NETWORKS, BLOCKED_NAMES) - also hidden inside IPv6 (IPv4-mapped, IPv4-compatible,
  6to4, NAT64). Always; no setting re-admits them.
- the address:port of every registered Docker engine (hosts with a tcp://, http(s):// or ssh://
  URL; registered by the containers app, see dockmon_site/outbound_engines.py): every address the
  engine's host name resolves to, and the name itself, on that port. An engine on a loopback or
  local-interface address is refused on *every* loopback and local address for its port (a
  daemon bound to 0.0.0.0 answers on all of them). Always.
- ports 2375 and 2376 (Docker's API ports) on any address, unless an ALLOW entry that names the
  port explicitly re-admits it for its addresses (registered engines stay refused).
- whatever settings.DOCKMON_OUTBOUND_DENY matches; and when settings.DOCKMON_OUTBOUND_ALLOW is
  set, whatever it does not match. Both: comma-separated items, each one of
  `CIDR` / `ADDRESS`, `CIDR:PORTS`, `[IPv6 CIDR]:PORTS` or `:PORTS`, PORTS a port or a range
  `LOW-HIGH`. E.g. DENY=":25,10.0.0.0/8:8000-8100", ALLOW="127.0.0.0/8,::1/128" (loopback only).
  Parsed strictly by `parse_rules` (settings.py refuses to start on a bad item).
- HTTP methods other than GET and HEAD chosen by someone who is not an administrator
  (`check_method`, `validate_url(method=..., admin=...)`, `request(admin=False)`).
Loopback and private ranges are allowed by default: that is where containers live.

Enforcement is at connection time: the host name is resolved once, every address is checked,
and the socket connects to exactly a checked address (no second lookup a rebinding DNS server
could answer differently); a name with any refused address is refused as a whole. Redirects are
followed one hop at a time, each hop checked the same way; credentials (headers, auth) go only
to the first URL's origin, and a 307/308 that would re-send a body to another origin is not
followed. Bodies are read up to `max_bytes`; a watchdog shuts the socket at the total deadline
(connect + headers + body), so a server that drips its answer cannot outlast `timeout`. The
environment is ignored (proxies, REQUESTS_CA_BUNDLE, .netrc: `trust_env = False`).

API (stable; additions only):

    validate_url(url, *, method="GET", admin=False, resolve=False) -> str
        Save-time check: http(s) only, a host, no credentials in the URL, a literal address or
        known name not refused, the method allowed. Host names are not looked up unless
        resolve=True (then every address is checked; an unresolvable name passes, the
        connection decides); "localhost" and numeric IPv4 spellings (2130706433, 127.1) are
        checked as the addresses they stand for. Returns the stripped URL; raises Refused (a
        ValueError) with a message fit for the user, for a malformed URL as for a refused one.
    check_method(method, *, admin) -> str
        "GET"/"HEAD" for anyone, other methods only with admin=True; ValueError otherwise.
    check_host_port(host, port, *, resolve=True, timeout=5.0) -> list[str]
        For non-HTTP destinations (SMTP): the checked addresses to connect to (Refused, or
        ConnectionFailed when the name does not resolve).
    create_connection(host, port, *, timeout=10.0) -> socket.socket
        A TCP connection to a checked address of host:port (e.g. smtplib's _get_socket).
    request(method, url, *, timeout=10.0, max_bytes=DEFAULT_MAX_BYTES, headers=None, json=None,
            data=None, params=None, auth=None, verify=True, ca_pem="", follow_redirects=True,
            max_redirects=MAX_REDIRECTS, admin=None, user_agent=USER_AGENT) -> Response
        One request under the policy. `admin`: None = DockMon chose the method (e.g. a webhook
        POST); False/True = a user chose it, and only an administrator may choose other than
        GET/HEAD. `verify`: bool or a CA bundle path; `ca_pem`: PEM text of CAs to trust
        instead (implies verification). `auth`: a (user, password) tuple or a requests AuthBase.
        Any HTTP status is a Response; failures raise OutboundError subclasses:
        Refused (policy, or a malformed URL; nothing sent to the refused target), Timeout,
        ConnectionFailed (incl. TLS errors), TooManyRedirects. Each carries .url (the hop that
        failed), .redirects, .addresses and, for refused or excess redirects, .response (the
        3xx Response) and .status_code.
    Response: status_code (alias status), headers (case-insensitive), content (alias body;
        at most max_bytes), truncated, url (final), redirects, elapsed_ms, addresses, reason;
        .ok (status < 400), .text, .json().
    parse_rules(text_or_items, *, setting="rules") -> tuple[Rule, ...]  (ValueError when bad)
    blocked_reason(address) -> str | None; BLOCKED_NETWORKS; BLOCKED_NAMES; ENGINE_PORTS.

This module imports no DockMon app (dockmon_site may not): the engines come from the provider
registered in dockmon_site/outbound_engines.py (register_engine_targets, invalidate_engine_targets,
refresh_engine_targets, engine_targets). The connection layer (pinned connections, the watchdog)
is dockmon_site/outbound_net.py; the address tables and the list parser are
dockmon_site/outbound_rules.py (no Django, no network).
"""

from __future__ import annotations

import json as jsonlib
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from dockmon_site import outbound_engines
from dockmon_site import outbound_net as net
from dockmon_site.outbound_rules import (  # noqa: F401 - part of this module's API
    BLOCKED_NAMES,
    BLOCKED_NETWORKS,
    LOOPBACK_NAMES,
    Rule,
    blocked_reason,
    candidates,
    ip_of,
    is_local,
    normal_host,
    parse_rules,
)

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 1024 * 1024
USER_AGENT = "DockMon/1.0"
REDIRECT_CODES = (301, 302, 303, 307, 308)
SAFE_METHODS = ("GET", "HEAD")
ENGINE_PORTS = (2375, 2376)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
class OutboundError(Exception):
    """A request that did not produce a response (or whose redirect was not followed)."""

    def __init__(self, message: str, *, url: str = "", response: Response | None = None):
        super().__init__(message)
        self.url = url
        self.response = response
        self.redirects = 0
        self.addresses: list[str] = []

    @property
    def status_code(self) -> int | None:
        return self.response.status_code if self.response is not None else None


class Refused(OutboundError, ValueError):
    """The policy refuses the target (or the URL is malformed): nothing was sent to it.
    Deliberately not an OSError, so that urllib3 and requests let it through unchanged."""


class Timeout(OutboundError):
    """No complete response within the total deadline."""


class ConnectionFailed(OutboundError):
    """Could not connect, resolve, or complete TLS."""


class TooManyRedirects(OutboundError):
    """More than max_redirects redirects; .response is the last 3xx."""



# ---------------------------------------------------------------------------
# Deny / allow lists from settings (parsed once per value)
# ---------------------------------------------------------------------------
_rules_cache: dict = {}


def _rules(name: str) -> tuple[Rule, ...]:
    from django.conf import settings

    raw = getattr(settings, name, "") if settings.configured else ""
    key = (name, raw if isinstance(raw, str) else tuple(raw or ()))
    rules = _rules_cache.get(key)
    if rules is None:
        rules = parse_rules(raw, setting=name)
        _rules_cache[key] = rules
    return rules


# ---------------------------------------------------------------------------
# The policy
# ---------------------------------------------------------------------------
def _where(name: str | None, ip, port: int) -> str:
    address = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    if name and normal_host(name) != str(ip):
        return f"{name} resolves to {address}, which"
    return address


def check_address(address: str, port: int, *, name: str | None = None) -> None:
    """Refused unless `address:port` (reached through the host name `name`) may be contacted."""
    ip = ip_of(address)
    if ip is None:
        raise Refused(f"Refused: {address!r} is not an IP address.")
    forms = candidates(ip)
    primary = forms[0]
    where = _where(name, ip, port)
    for candidate in forms:
        for network, label in BLOCKED_NETWORKS:
            if candidate.version == network.version and candidate in network:
                raise Refused(f"Refused: {where} is a {label}; DockMon may not reach it.")
    if not 1 <= port <= 65535:
        raise Refused(f"Refused: port {port} cannot be reached.")
    engines = outbound_engines.engine_targets()
    host_name = normal_host(name) if name else ""
    for candidate in forms:
        if port in engines.addresses.get(candidate, ()) or (port in engines.local_ports and is_local(candidate)) \
                or port in engines.names.get(host_name, ()):
            raise Refused(f"Refused: {where} is a registered Docker engine; DockMon may not reach it.")
    for rule in _rules("DOCKMON_OUTBOUND_DENY"):
        if any(rule.matches(candidate, port) for candidate in forms):
            raise Refused(f"Refused: {where} is denied by DOCKMON_OUTBOUND_DENY ({rule.text}).")
    allow = _rules("DOCKMON_OUTBOUND_ALLOW")
    readmitted = False
    if allow:
        matching = [rule for rule in allow if rule.matches(primary, port)]
        if not matching:
            raise Refused(f"Refused: {where} is not in DOCKMON_OUTBOUND_ALLOW.")
        readmitted = any(rule.names_port(port) for rule in matching)
    if port in ENGINE_PORTS and not readmitted:
        raise Refused(f"Refused: port {port} is the Docker engine API port; DockMon may not reach it.")


def _check_name(name: str, port: int) -> None:
    """What can be said of a host name without looking it up."""
    if name in BLOCKED_NAMES:
        raise Refused(f"Refused: {name} is a cloud metadata service; DockMon may not reach it.")
    if name and all(ch in "0123456789abcdefx." for ch in name):
        # 2130706433, 0x7f.1, 127.1: the resolver reads these as IPv4 addresses, so do we.
        try:
            check_address(socket.inet_ntoa(socket.inet_aton(name)), port, name=name)
        except OSError:
            pass
    if port in outbound_engines.engine_targets().names.get(name, ()):
        raise Refused(f"Refused: {name}:{port} is a registered Docker engine; DockMon may not reach it.")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        for address in ("127.0.0.1", "::1"):
            check_address(address, port, name=name)


def check_method(method: str, *, admin: bool) -> str:
    """GET and HEAD for anyone; any other method needs an administrator."""
    method = str(method or "").strip().upper()
    if method not in SAFE_METHODS and not admin:
        raise Refused(f"Only an administrator may send {method or 'this method'} requests; use GET or HEAD.")
    return method


def _split(url: str):
    if not isinstance(url, str) or not url.strip():
        raise Refused("Give a URL, e.g. http://127.0.0.1:8080/health.")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"Not a valid URL: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("Only http:// and https:// URLs can be used.")
    if not parts.hostname:
        raise Refused("The URL has no host.")
    if parts.username or parts.password:
        raise Refused("Put credentials in the basic-auth or header fields, not in the URL.")
    if port == 0:
        raise Refused("Port 0 cannot be reached.")
    if any(ch in url for ch in "\r\n\t\x00 "):
        raise Refused("The URL may not contain spaces or control characters.")
    return url, normal_host(parts.hostname), port or (443 if parts.scheme == "https" else 80)


def validate_url(url: str, *, method: str = "GET", admin: bool = False, resolve: bool = False) -> str:
    """Save-time check of a URL (and the method it will be sent with); see the module doc."""
    url, host, port = _split(url)
    check_method(method, admin=admin)
    if ip_of(host) is not None:
        check_address(host, port)
        return url
    _check_name(host, port)
    if resolve:
        try:
            addresses = _resolve_name(host, port, 5.0)
        except OSError:
            return url
        for address in addresses:
            check_address(address, port, name=host)
    return url


# ---------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------
_dns_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="outbound-dns")


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def _resolve_name(name: str, port: int, timeout: float) -> list[str]:
    # getaddrinfo has no timeout of its own: run it aside and stop waiting at the deadline.
    future = _dns_pool.submit(_getaddrinfo, name, port)
    try:
        addresses = future.result(timeout=max(timeout, 0.01))
    except FutureTimeout:
        raise OSError(f"resolving {name} took longer than {timeout:.1f}s") from None
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {name}: {exc.strerror or exc}") from None
    if not addresses:
        raise OSError(f"{name} has no address")
    return addresses


def resolve_checked(host: str, port: int, timeout: float) -> list[str]:
    """The addresses to connect to, every one checked; raises Refused or OSError. A name with
    any refused address is refused as a whole (a name mixing a metadata address with others is
    an attack, not a configuration)."""
    name = normal_host(host)
    if ip_of(name) is not None:
        check_address(name, port)
        return [name.split("%", 1)[0]]
    _check_name(name, port)
    addresses = _resolve_name(name, port, timeout)
    for address in addresses:
        try:
            check_address(address, port, name=name)
        except Refused as exc:
            raise Refused(f"{str(exc).rstrip('.')}; nothing was sent.") from None
    return addresses


resolve = resolve_checked


def check_host_port(host: str, port: int, *, resolve: bool = True, timeout: float = 5.0) -> list[str]:
    """For non-HTTP destinations (SMTP): the checked addresses of host:port to connect to.
    resolve=False (save time): only what can be said without a lookup; returns []."""
    name = normal_host(host)
    if not name:
        raise Refused("Give a host name or address.")
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise Refused(f"{port!r} is not a port.") from None
    if not resolve:
        if ip_of(name) is not None:
            check_address(name, port)
        else:
            _check_name(name, port)
        return []
    try:
        return resolve_checked(name, port, timeout)
    except OSError as exc:
        raise ConnectionFailed(f"Connection failed: {exc}", url=f"{name}:{port}") from None


def create_connection(host: str, port: int, *, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to a checked address of host:port (the address connected is the one checked)."""
    last: OSError | None = None
    for address in check_host_port(host, port, timeout=timeout):
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            last = exc
    raise ConnectionFailed(f"Connection failed: {last}", url=f"{host}:{port}")


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------
@dataclass
class Response:
    status_code: int
    headers: CaseInsensitiveDict
    content: bytes
    truncated: bool = False
    url: str = ""
    redirects: int = 0
    elapsed_ms: int = 0
    addresses: list[str] = field(default_factory=list)
    reason: str = ""
    encoding: str | None = None

    @property
    def status(self) -> int:
        return self.status_code

    @property
    def body(self) -> bytes:
        return self.content

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding or "utf-8", errors="replace")

    def json(self):
        return jsonlib.loads(self.content.decode(self.encoding or "utf-8"))


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme, normal_host(parts.hostname or ""), parts.port or (443 if parts.scheme == "https" else 80)


def request(method: str, url: str, *, timeout: float = 10.0, max_bytes: int = DEFAULT_MAX_BYTES, headers: dict | None = None,
            json=None, data=None, params=None, auth=None, verify: bool | str = True, ca_pem: str = "",
            follow_redirects: bool = True, max_redirects: int = MAX_REDIRECTS, admin: bool | None = None,
            user_agent: str = USER_AGENT) -> Response:
    """Send one request under the policy; see the module doc. Never sends to a refused target."""
    started = time.monotonic()
    method = str(method or "GET").upper()
    if admin is not None:
        check_method(method, admin=admin)
    url, _, _ = _split(url)
    if ca_pem and ca_pem.strip() and verify is not False:
        verify = net.ca_file(ca_pem)
    ctx = net.Context(started + timeout)
    session = net.pinned_session()
    first_origin = _origin(url)
    hop_url, redirects, body_json, body_data = url, 0, json, data
    try:
        with net.active(ctx):
            while True:
                same_origin = _origin(hop_url) == first_origin
                send_headers = {"User-Agent": user_agent}
                if same_origin:  # never hand credentials to another host a redirect points at
                    send_headers.update(headers or {})
                left = ctx.remaining()
                if left <= 0:
                    raise Timeout(f"Timed out: no complete response within {timeout:g}s.", url=hop_url)
                try:
                    raw = session.request(
                        method, hop_url, headers=send_headers, auth=auth if same_origin else None,
                        params=params if redirects == 0 else None, json=body_json, data=body_data,
                        allow_redirects=False, stream=True, verify=verify, timeout=(left, left),
                    )
                except Refused as exc:
                    prefix = f"Refused redirect to {hop_url}: " if redirects else ""
                    raise Refused(prefix + str(exc), url=hop_url) from None
                except OutboundError:
                    raise
                except Exception as exc:
                    raise _failure(exc, ctx, timeout, hop_url) from None
                try:
                    response = _read(raw, method, max_bytes, ctx, timeout, hop_url)
                finally:
                    raw.close()
                response.redirects = redirects
                location = response.headers.get("location")
                if not (follow_redirects and response.status_code in REDIRECT_CODES and location):
                    return response
                if redirects >= max_redirects:
                    raise TooManyRedirects(f"More than {max_redirects} redirects.", url=hop_url, response=response)
                target = urljoin(hop_url, location)
                try:
                    target, host, port = _split(target)
                    if ip_of(host) is not None:
                        check_address(host, port)
                    else:
                        _check_name(host, port)
                except Refused as exc:
                    raise Refused(f"Refused redirect to {target}: {exc}", url=hop_url, response=response) from None
                if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                    method = "GET" if method != "HEAD" else method
                    body_json = body_data = None
                elif (body_json is not None or body_data is not None) and _origin(target) != first_origin:
                    return response  # a 307/308 would re-send the body to another origin: not followed
                hop_url, redirects = target, redirects + 1
    except OutboundError as exc:
        if ctx.expired and not isinstance(exc, (Refused, Timeout)):
            exc = Timeout(f"Timed out: no complete response within {timeout:g}s.", url=hop_url)
        exc.redirects, exc.addresses = redirects, list(ctx.addresses)
        raise exc from None
    finally:
        ctx.finish()
        session.close()


def _read(raw, method: str, max_bytes: int, ctx, timeout: float, url: str) -> Response:
    chunks, size, truncated = [], 0, False
    try:
        if method != "HEAD":
            for chunk in raw.iter_content(8192):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    truncated = True
                    break
                if ctx.remaining() <= 0:
                    break
        if ctx.expired or ctx.remaining() < 0:
            raise Timeout(f"Timed out: no complete response within {timeout:g}s.", url=url)
    except OutboundError:
        raise
    except Exception as exc:
        raise _failure(exc, ctx, timeout, url) from None
    return Response(
        status_code=raw.status_code, headers=CaseInsensitiveDict(raw.headers), content=b"".join(chunks)[:max_bytes],
        truncated=truncated, url=url, elapsed_ms=int((time.monotonic() - ctx.started) * 1000),
        addresses=list(ctx.addresses), reason=raw.reason or "", encoding=raw.encoding,
    )


def _failure(exc: BaseException, ctx, timeout: float, url: str) -> OutboundError:
    if ctx.expired:
        return Timeout(f"Timed out: no complete response within {timeout:g}s.", url=url)
    for inner in net.chain(exc):
        if isinstance(inner, Refused):
            return Refused(str(inner), url=url)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Timeout(f"Timed out connecting (limit {timeout:g}s).", url=url)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return Timeout(f"Timed out: no response within {timeout:g}s.", url=url)
    if isinstance(exc, requests.exceptions.SSLError):
        return ConnectionFailed(f"TLS error: {net.short(net.innermost(exc))}", url=url)
    text = " ".join(str(inner) for inner in net.chain(exc))
    if "Connection refused" in text:
        return ConnectionFailed("Connection refused.", url=url)
    if "timed out" in text.lower():
        return Timeout(f"Timed out (limit {timeout:g}s).", url=url)
    if isinstance(exc, (requests.exceptions.ConnectionError, OSError)):
        return ConnectionFailed(f"Connection failed: {net.short(net.innermost(exc))}", url=url)
    return ConnectionFailed(f"Request failed: {net.short(exc)}", url=url)
