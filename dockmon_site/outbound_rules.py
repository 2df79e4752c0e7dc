"""Addresses and rules of the outbound policy (dockmon_site/outbound.py): what may never be
reached, IPv4 hidden in IPv6, this machine's own addresses, and the strict parser of the
administrator's DOCKMON_OUTBOUND_DENY / DOCKMON_OUTBOUND_ALLOW lists.

No Django, no network: settings.py imports this module to refuse a bad list at start-up.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass

# Never reached, whatever the settings say. Link-local is where every cloud keeps its metadata
# service (credentials!), so the whole range is refused, plus the few metadata addresses elsewhere.
BLOCKED_NETWORKS = [
    (ipaddress.ip_network("169.254.0.0/16"), "link-local (cloud metadata) address"),
    (ipaddress.ip_network("fe80::/10"), "IPv6 link-local address"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "the AWS metadata service (IPv6)"),
    (ipaddress.ip_network("100.100.100.200/32"), "the Alibaba Cloud metadata service"),
    (ipaddress.ip_network("224.0.0.0/4"), "multicast address"),
    (ipaddress.ip_network("ff00::/8"), "IPv6 multicast address"),
    (ipaddress.ip_network("0.0.0.0/8"), "unspecified address"),
    (ipaddress.ip_network("::/128"), "unspecified address"),
    (ipaddress.ip_network("255.255.255.255/32"), "broadcast address"),
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
# Names every resolver answers with loopback: checked as such at save time, without a lookup.
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")


def ip_of(text) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address in `text` (brackets and an IPv6 zone allowed), or None for a name."""
    try:
        return ipaddress.ip_address(str(text).strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def candidates(ip) -> list:
    """The address and every IPv4 address hidden in it (IPv4-mapped first: it *is* that IPv4
    host; IPv4-compatible, 6to4 and NAT64 forms reach it through a gateway)."""
    out = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            out.insert(0, ip.ipv4_mapped)
        if ip.sixtofour:
            out.append(ip.sixtofour)
        if ip in _NAT64 or (ip in _COMPAT and int(ip) > 1):
            out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def blocked_reason(address) -> str | None:
    """Why an IP address may never be reached (metadata, link-local, multicast...), or None."""
    ip = ip_of(address)
    if ip is None:
        return None
    for candidate in candidates(ip):
        for network, label in BLOCKED_NETWORKS:
            if candidate.version == network.version and candidate in network:
                return label
    return None


def normal_host(host) -> str:
    return str(host or "").strip().strip("[]").rstrip(".").lower()


_local_cache: tuple[float, frozenset] = (0.0, frozenset())
_local_lock = threading.Lock()


def local_addresses() -> frozenset:
    """This machine's own interface addresses (Linux /proc; empty elsewhere), cached a minute."""
    global _local_cache
    with _local_lock:
        if _local_cache[0] > time.monotonic():
            return _local_cache[1]
        found: set = set()
        try:
            with open("/proc/net/fib_trie") as handle:
                last = None
                for line in handle:
                    text = line.strip()
                    if text.startswith("|--"):
                        last = text[3:].strip()
                    elif text.startswith("/32 host LOCAL") and last:
                        ip = ip_of(last)
                        if ip is not None:
                            found.add(ip)
        except OSError:
            pass
        try:
            with open("/proc/net/if_inet6") as handle:
                for line in handle:
                    fields = line.split()
                    if fields and len(fields[0]) == 32:
                        found.add(ipaddress.IPv6Address(int(fields[0], 16)))
        except (OSError, ValueError):
            pass
        _local_cache = (time.monotonic() + 60.0, frozenset(found))
        return _local_cache[1]


def is_local(ip) -> bool:
    """Loopback, unspecified, or an address of one of this machine's interfaces."""
    return ip.is_loopback or ip.is_unspecified or ip in local_addresses()


# ---------------------------------------------------------------------------
# Deny / allow lists
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One item of a deny/allow list: a network (None: any address) and ports (empty: any)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    ports: tuple[tuple[int, int], ...]
    text: str

    def matches(self, ip, port: int) -> bool:
        if self.network is not None and (ip.version != self.network.version or ip not in self.network):
            return False
        return not self.ports or any(low <= port <= high for low, high in self.ports)

    def names_port(self, port: int) -> bool:
        """The item lists this port explicitly (what re-admits 2375/2376 in an allow list)."""
        return any(low <= port <= high for low, high in self.ports)


def _ports(text: str, item: str) -> tuple[tuple[int, int], ...]:
    low_text, dash, high_text = text.partition("-")
    if not low_text.isdigit() or (dash and not high_text.isdigit()) or len(low_text) > 5 or len(high_text) > 5:
        raise ValueError(f"{item!r}: {text!r} is not a port or a range like 8000-8100.")
    low = int(low_text)
    high = int(high_text) if dash else low
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise ValueError(f"{item!r}: ports run from 1 to 65535.")
    if low > high:
        raise ValueError(f"{item!r}: the port range runs backwards.")
    return ((low, high),)


def _network(text: str, item: str):
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"{item!r}: {exc}.") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(ipaddress.ip_network("::ffff:0:0/96")) \
            and network.prefixlen >= 96:
        raise ValueError(f"{item!r}: write IPv4-mapped networks in IPv4 form (they are matched as IPv4).")
    return network


def _rule(item: str) -> Rule:
    if item.startswith(":") and not item.startswith("::"):
        return Rule(None, _ports(item[1:], item), item)
    if item.startswith("["):
        inner, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or rest == ":":
            raise ValueError(f"{item!r}: write an IPv6 network with ports as [fd00::/8]:8080.")
        return Rule(_network(inner, item), _ports(rest[1:], item) if rest else (), item)
    if "/" in item:
        address, _, rest = item.partition("/")
        length, colon, port_text = rest.partition(":")
        return Rule(_network(f"{address}/{length}", item), _ports(port_text, item) if colon else (), item)
    if item.count(":") == 1:  # an IPv4 address with ports
        address, _, port_text = item.partition(":")
        if ip_of(address) is None or ip_of(address).version != 4:
            raise ValueError(f"{item!r}: not an address with a port (IPv6: [::1]:8080).")
        return Rule(_network(address, item), _ports(port_text, item), item)
    return Rule(_network(item, item), (), item)


def parse_rules(value, *, setting: str = "rules") -> tuple[Rule, ...]:
    """Parse a deny/allow list, strictly: a comma-separated string or a list of items, each
    `CIDR` or address, `CIDR:PORTS`, `[IPv6 CIDR]:PORTS` or `:PORTS`, PORTS one port or
    `LOW-HIGH`. ValueError naming the setting and the item otherwise (host bits set in a
    network, an empty item, a port out of range...)."""
    if value is None:
        return ()
    if isinstance(value, str):
        if not value.strip():
            return ()
        items = value.split(",")
    else:
        items = list(value)
    rules = []
    for raw in items:
        item = str(raw).strip()
        if not item:
            raise ValueError(f"{setting}: an empty item (two commas in a row, or a trailing comma).")
        try:
            rules.append(_rule(item))
        except ValueError as exc:
            raise ValueError(f"{setting}: {exc}") from None
    return tuple(rules)
