"""The registered Docker engines, which the outbound policy (dockmon_site/outbound.py) never reaches.

The containers app registers a provider in its ready() (`register_engine_targets`); the policy
asks `engine_targets()` for a snapshot: the engines' host names, every address those names
resolve to, and the ports of engines on this machine. A snapshot lasts ENGINE_CACHE_SECONDS, or
until `invalidate_engine_targets()` (called on every host change). This module imports no app.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dockmon_site.outbound_rules import candidates, ip_of, is_local, normal_host

logger = logging.getLogger(__name__)

ENGINE_CACHE_SECONDS = 10.0
ENGINE_RESOLVE_TIMEOUT = 2.0


@dataclass
class _Engines:
    names: dict = field(default_factory=dict)  # host name -> {ports}
    addresses: dict = field(default_factory=dict)  # ip -> {ports}
    local_ports: set = field(default_factory=set)  # ports of engines on this machine
    expires: float = 0.0


_engine_provider: Callable[[], Iterable] | None = None
_engines: _Engines | None = None
_engine_lock = threading.Lock()


def register_engine_targets(provider: Callable[[], Iterable]) -> None:
    """provider() returns every registered engine: URLs ("tcp://h:2376", "ssh://u@h") and/or
    (host, port) pairs. Called again at most every ENGINE_CACHE_SECONDS, or after
    invalidate_engine_targets(); unix:// and other non-network URLs are ignored."""
    global _engine_provider
    _engine_provider = provider
    invalidate_engine_targets()


def invalidate_engine_targets() -> None:
    global _engines
    _engines = None


def engine_endpoint(url: str) -> tuple[str, int] | None:
    """(host, port) an engine URL connects to, or None for a local socket."""
    try:
        parts = urlsplit(str(url).strip())
        port = parts.port
    except ValueError:
        return None
    defaults = {"tcp": 2375, "http": 2375, "https": 2376, "ssh": 22}
    if parts.scheme not in defaults or not parts.hostname:
        return None
    return normal_host(parts.hostname), port or defaults[parts.scheme]


def _load_engines() -> _Engines:
    from django.db import connection

    # The policy's own resolver, looked up at call time (it imports this module).
    from dockmon_site import outbound

    snapshot = _Engines(expires=time.monotonic() + ENGINE_CACHE_SECONDS)
    if _engine_provider is None:
        return snapshot
    # A thread without a database connection of its own (a probe thread) closes the one the
    # provider opened: hundreds of probe threads must not each keep one.
    opened = connection.connection is None
    try:
        items = list(_engine_provider())
    finally:
        if opened and not connection.in_atomic_block:
            connection.close()
    endpoints = []
    for item in items:
        endpoint = engine_endpoint(item) if isinstance(item, str) else (normal_host(item[0]), int(item[1]))
        if endpoint is not None:
            endpoints.append(endpoint)
            snapshot.names.setdefault(endpoint[0], set()).add(endpoint[1])
    # Every engine name is looked up at once, all within ENGINE_RESOLVE_TIMEOUT; a name that does
    # not resolve still counts by itself.
    lookups = {(host, port): outbound._dns_pool.submit(outbound._getaddrinfo, host, port) for host, port in endpoints if ip_of(host) is None}
    deadline = time.monotonic() + ENGINE_RESOLVE_TIMEOUT
    for host, port in endpoints:
        if (host, port) not in lookups:
            addresses = [ip_of(host)]
        else:
            try:
                addresses = [ip_of(a) for a in lookups[(host, port)].result(timeout=max(0.01, deadline - time.monotonic()))]
            except (FutureTimeout, OSError):
                addresses = []
        for ip in filter(None, addresses):
            for candidate in candidates(ip):
                snapshot.addresses.setdefault(candidate, set()).add(port)
                if is_local(candidate):
                    snapshot.local_ports.add(port)
    return snapshot


def engine_targets(*, refresh: bool = False) -> _Engines:
    """The current snapshot of engine addresses (loaded when stale). If the provider fails and
    there is no earlier snapshot, everything is refused (fail closed)."""
    global _engines
    current = _engines
    if current is not None and not refresh and current.expires > time.monotonic():
        return current
    with _engine_lock:
        current = _engines
        if current is not None and not refresh and current.expires > time.monotonic():
            return current
        try:
            _engines = _load_engines()
        except Exception as exc:
            logger.exception("could not read the registered Docker engines")
            if current is None:
                from dockmon_site.outbound import Refused

                raise Refused(f"Refused: the registered Docker engines could not be read ({exc.__class__.__name__}); "
                              "nothing was sent.") from None
            current.expires = time.monotonic() + 1.0
            return current
        return _engines


def refresh_engine_targets() -> None:
    """Load the engine snapshot now (call from a thread with database access before handing
    requests to threads without one)."""
    engine_targets(refresh=True)
