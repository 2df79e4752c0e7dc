"""The test network guard refuses and records what would leave loopback, lets loopback through,
and is undone on exit (the API fuzzer relies on all three)."""

from __future__ import annotations

import socket
import subprocess

import pytest

from dockmon_site.tests.netguard import NetGuard, _ssh_destination


def test_it_refuses_and_records_connections_lookups_and_ssh_beyond_loopback():
    originals = (socket.socket.connect, socket.getaddrinfo, subprocess.Popen.__init__)
    with NetGuard() as guard:
        for address in (("10.11.12.13", 80), ("::ffff:10.0.0.1", 80, 0, 0), ("example.com", 443)):
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            with socket.socket(family) as sock, pytest.raises(ConnectionRefusedError):
                sock.connect(address)
        with socket.socket() as sock:
            assert sock.connect_ex(("192.0.2.1", 9)) != 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(PermissionError):
            sock.sendto(b"x", ("10.255.255.53", 53))
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("registry.example.com", 443)
        with pytest.raises(PermissionError):
            subprocess.Popen(["ssh", "-o", "BatchMode=yes", "-p", "22", "--", "10.1.2.3", "docker system dial-stdio"])
        with pytest.raises(PermissionError):
            subprocess.Popen(["ssh", "-l", "me", "localhost", "true"])
        # Loopback still works: a listener on 127.0.0.1, and localhost resolves from /etc/hosts.
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            with socket.create_connection(("localhost", server.getsockname()[1]), timeout=2):
                pass
        assert subprocess.run(["true"]).returncode == 0
    assert len(guard.violations) == 6, guard.violations  # 3 connects, connect_ex, sendto, the private ssh
    assert [line.split("\n")[0] for line in guard.lookups] == ["getaddrinfo('registry.example.com')"]
    assert len(guard.ssh_spawns) == 1 and "localhost" in guard.ssh_spawns[0]
    assert (socket.socket.connect, socket.getaddrinfo, subprocess.Popen.__init__) == originals


@pytest.mark.parametrize(("args", "expected"), [
    (["-o", "BatchMode=yes", "-l", "me", "-p", "2222", "--", "box", "docker"], "box"),
    (["-4", "root@10.0.0.1", "true"], "root@10.0.0.1"),
    (["ssh://me@host:22"], "me@host"),
])
def test_it_reads_the_destination_of_an_ssh_command_line(args, expected):
    assert _ssh_destination(args) == expected
