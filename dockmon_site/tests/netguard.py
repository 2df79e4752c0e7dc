"""A network guard for tests that feed generated input to DockMon in-process (the API fuzzer).

While it is active, nothing this process does can reach an address beyond loopback: every
attempt raises before a packet is sent and is recorded, so that the test can assert that the
product itself never tried.

- socket.socket.connect / connect_ex / sendto / sendmsg: IPv4 and IPv6 destinations outside
  127.0.0.0/8 and ::1 (and names that are not local) are refused; AF_UNIX is local and allowed.
- socket.getaddrinfo / gethostbyname(_ex) / gethostbyaddr / getnameinfo: a name that is not
  answered from /etc/hosts with a loopback address would be a DNS query to the machine's
  resolver (a private address here): refused with EAI_NONAME and counted as a lookup (not a
  violation: resolving a name is how the product must check where a name points).
- subprocess.Popen of `ssh` (the Docker SDK reaches ssh:// engines through it; the socket
  patches cannot see that child's traffic): refused; a non-loopback destination is a violation.

This is fault injection at the process boundary (the project's rules allow it), not a mock of
the Docker SDK or of any service: everything on loopback runs for real.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess
import threading
import traceback

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _hosts_file_loopback_names() -> set[str]:
    names = set(LOCAL_NAMES)
    try:
        with open("/etc/hosts") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and _is_loopback_ip(fields[0]):
                    names.update(name.lower() for name in fields[1:])
    except OSError:
        pass
    return names


def _is_loopback_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


class NetGuard:
    """Context manager; `violations` and `lookups` are lists of (what, where-from) strings."""

    def __init__(self):
        self.violations: list[str] = []
        self.lookups: list[str] = []
        self.ssh_spawns: list[str] = []
        self._lock = threading.Lock()
        self._saved: list[tuple[object, str, object]] = []
        self._local_names = _hosts_file_loopback_names() | {socket.gethostname().lower()}

    # -- decisions -------------------------------------------------------------------------
    def _name_is_local(self, host) -> bool:
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        host = str(host).strip().lower().rstrip(".")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return host in ("", "0.0.0.0", "::") or _is_loopback_ip(host) or host in self._local_names

    def _destination_is_local(self, family, address) -> bool:
        if family == getattr(socket, "AF_UNIX", None) or isinstance(address, (str, bytes)):
            return True
        if not isinstance(address, tuple) or not address:
            return False
        return self._name_is_local(address[0])

    def _record(self, bucket: list[str], what: str) -> None:
        stack = "".join(traceback.format_stack(limit=14)[:-3])
        with self._lock:
            bucket.append(f"{what}\n{stack}")

    # -- patches ---------------------------------------------------------------------------
    def __enter__(self) -> NetGuard:
        guard = self
        real = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto", "sendmsg")}

        def connect(sock, address):
            if not guard._destination_is_local(sock.family, address):
                guard._record(guard.violations, f"connect to {address!r}")
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"blocked by the test network guard: {address!r}")
            return real["connect"](sock, address)

        def connect_ex(sock, address):
            if not guard._destination_is_local(sock.family, address):
                guard._record(guard.violations, f"connect_ex to {address!r}")
                return errno.ECONNREFUSED
            return real["connect_ex"](sock, address)

        def sendto(sock, data, *args):
            address = args[-1]
            if not guard._destination_is_local(sock.family, address):
                guard._record(guard.violations, f"sendto {address!r}")
                raise PermissionError(errno.EPERM, f"blocked by the test network guard: {address!r}")
            return real["sendto"](sock, data, *args)

        def sendmsg(sock, buffers, *args):
            address = args[2] if len(args) >= 3 else None
            if address is not None and not guard._destination_is_local(sock.family, address):
                guard._record(guard.violations, f"sendmsg {address!r}")
                raise PermissionError(errno.EPERM, f"blocked by the test network guard: {address!r}")
            return real["sendmsg"](sock, buffers, *args)

        for name, func in (("connect", connect), ("connect_ex", connect_ex), ("sendto", sendto), ("sendmsg", sendmsg)):
            self._patch(socket.socket, name, func)

        def lookup(real_func, label):
            def guarded(host, *args, **kwargs):
                if not guard._name_is_local(host) and not (isinstance(host, str) and _is_ip(host)):
                    guard._record(guard.lookups, f"{label}({host!r})")
                    raise socket.gaierror(socket.EAI_NONAME, f"blocked by the test network guard: {host!r}")
                return real_func(host, *args, **kwargs)

            return guarded

        for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
            self._patch(socket, name, lookup(getattr(socket, name), name))

        real_gethostbyaddr = socket.gethostbyaddr
        real_getnameinfo = socket.getnameinfo

        def gethostbyaddr(host):
            if not guard._name_is_local(host):  # reverse lookups of other addresses ask DNS too
                guard._record(guard.lookups, f"gethostbyaddr({host!r})")
                raise socket.herror(1, f"blocked by the test network guard: {host!r}")
            return real_gethostbyaddr(host)

        def getnameinfo(sockaddr, flags):
            if not (flags & socket.NI_NUMERICHOST) and not guard._name_is_local(sockaddr[0]):
                guard._record(guard.lookups, f"getnameinfo({sockaddr!r})")
                raise socket.gaierror(socket.EAI_NONAME, f"blocked by the test network guard: {sockaddr!r}")
            return real_getnameinfo(sockaddr, flags)

        self._patch(socket, "gethostbyaddr", gethostbyaddr)
        self._patch(socket, "getnameinfo", getnameinfo)

        real_popen_init = subprocess.Popen.__init__

        def popen_init(popen, args, *rest, **kwargs):
            argv = [args] if isinstance(args, (str, bytes)) else list(args)
            if argv and os.path.basename(str(argv[0])) == "ssh":
                target = _ssh_destination([str(a) for a in argv[1:]])
                local = target is not None and guard._name_is_local(target.rsplit("@", 1)[-1])
                guard._record(guard.ssh_spawns if local else guard.violations, f"ssh to {target!r}: {argv!r}")
                raise PermissionError(errno.EPERM, f"ssh blocked by the test network guard: {target!r}")
            return real_popen_init(popen, args, *rest, **kwargs)

        self._patch(subprocess.Popen, "__init__", popen_init)
        return self

    def _patch(self, owner, name, func) -> None:
        self._saved.append((owner, name, owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)))
        setattr(owner, name, func)

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()


SSH_OPTIONS_WITH_VALUE = set("BbcDEeFIiJLlmOopQRSWw")


def _ssh_destination(args: list[str]) -> str | None:
    """The [user@]host an ssh command line names (its first non-option argument)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("-") and len(arg) > 1:
            if arg[-1] in SSH_OPTIONS_WITH_VALUE and len(arg) == 2:
                i += 2
                continue
            i += 1
            continue
        if arg.startswith("ssh://"):
            arg = arg[len("ssh://"):].split(":", 1)[0]
        return arg
    return None
