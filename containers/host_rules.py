"""Who may point a host at an engine, and which engine a host URL reaches.

A grant on a host covers every container of the engine behind its URL. Re-pointing the URL (or
swapping its TLS material) would carry the grant over to another engine, so it needs the model
permission `containers.change_dockerhost` (administrators), never an object grant. And a second
host on an engine that is already registered would give its creator a fresh set of grants on
containers they may not see, so a URL that reaches a registered engine is refused.

"Reaches the same engine" is decided on the URL alone (no DNS lookup, no connection):
- unix: the socket path with `.`/`..`/`//` and symbolic links resolved (/var/run -> /run);
- tcp: host and port, the port defaulting to 2375; every loopback spelling (localhost,
  *.localhost, 127.0.0.0/8, ::1, 0.0.0.0, ::, IPv4-mapped forms, 127.1, 0x7f000001...) is one
  host, because an engine listening on 0.0.0.0 or 127.0.0.1 answers on them alike; other
  addresses are compared in canonical form, names case-insensitively without a trailing dot;
- ssh: user, host (as for tcp) and port, the port defaulting to 22.
Two names of one machine in DNS, or a unix socket and a TCP port of the same engine, are not
recognised: telling them apart would need the engine's answer, and engines cloned from one
image report the same engine ID.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlparse

CONNECTION_FIELDS = ("url", "tls_ca", "tls_cert", "tls_key")
TLS_FIELDS = ("tls_ca", "tls_cert", "tls_key")
CHANGE_CONNECTION_PERM = "containers.change_dockerhost"
LOOPBACK = "(loopback)"


def may_change_connection(user) -> bool:
    """May `user` set or change where a host connects (URL, TLS material)? Model permission only."""
    return bool(user and user.is_authenticated and user.is_active and (user.is_superuser or user.has_perm(CHANGE_CONNECTION_PERM)))


def _canonical_host(name: str) -> str:
    name = (name or "").strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.split("%", 1)[0]  # an IPv6 zone names an interface, not another machine
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        try:
            # The forms the C resolver accepts as IPv4 too (127.1, 0x7f.1, 2130706433): parsed
            # locally, no lookup.
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except (OSError, ValueError):
            return name
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_unspecified:
        return LOOPBACK
    return address.compressed


def endpoint_identity(url: str) -> tuple:
    """What identifies the engine a host URL reaches (see the module's docstring)."""
    text = (url or "").strip()
    try:
        parsed = urlparse(text)
        scheme = parsed.scheme.lower()
        if scheme == "unix":
            path = os.path.normpath("/" + (parsed.netloc + parsed.path).lstrip("/"))
            return ("unix", os.path.realpath(path))
        if scheme == "tcp":
            return ("tcp", _canonical_host(parsed.hostname or ""), parsed.port or 2375)
        if scheme == "ssh":
            return ("ssh", parsed.username or "", _canonical_host(parsed.hostname or ""), parsed.port or 22)
    except ValueError:  # a port out of range in a stored URL
        pass
    return ("other", text)


def same_endpoint(url: str, *, exclude_pk=None):
    """The first other host whose URL reaches the engine `url` reaches, or None."""
    from containers.models import DockerHost

    wanted = endpoint_identity(url)
    others = DockerHost.objects.only("id", "name", "url").order_by("name")
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    for host in others.iterator():
        if endpoint_identity(host.url) == wanted:
            return host
    return None


def duplicate_message(other, user) -> str:
    """The refusal for a URL of a registered engine; names the host only to who may view it."""
    from containers.permissions import has_host_perm

    if user is None or has_host_perm(user, "view", other):
        return f"This engine is already registered as host {other.name!r}."
    return "This engine is already registered as another host."


def connection_changes(host, data) -> list[str]:
    """The connection fields (url, TLS material) that `data` (a request body) would change on
    `host`. A URL that normalises to the stored one, or TLS material equal to what is stored, is
    no change; anything unreadable counts as a change."""
    from containers import engine

    if not hasattr(data, "get"):
        return []
    changed = []
    if "url" in data:
        raw = data.get("url")
        if not isinstance(raw, str):
            changed.append("url")
        else:
            try:
                normalized = engine.normalize_url(raw, tls=host.uses_tls)
            except ValueError:
                normalized = None
            if normalized != host.url:
                changed.append("url")
    for name in TLS_FIELDS:
        if name in data:
            raw = data.get(name)
            if not isinstance(raw, str) or raw.strip() != (getattr(host, name) or "").strip():
                changed.append(name)
    return changed


def refusal(fields) -> str:
    return (f"Changing {', '.join(fields)} of a host needs the administrators' right to change hosts; "
            "a grant on the host does not give it.")
