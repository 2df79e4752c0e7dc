"""Memory of the web process while a WebSocket client follows a loud container and never reads.

Runs daphne against a fresh database, registers the testbed's alpha engine (unix socket) as a
DockerHost and starts a busybox container that writes ~10 MB/s of 1000-byte lines to stdout
(10 × 1 MB per wall-clock second) for the whole run. A WebSocket client (a raw socket with a
64 KiB receive buffer: it does the handshake, sends `logs.follow` and then never reads) follows
that container. The RSS of the daphne process is sampled every second from /proc for
--seconds (default 60); the script prints the RSS before the follow, the peak and the end, the
rate the container achieved, and, read after the run, what the client was sent: the log lines
it got before the server dropped the follow, and the `error` message saying so.

With --read the client reads everything instead (throughput of a client that keeps up; the
follow should not be dropped).

Usage: .venv/bin/python bench/ws_slow_follower.py [--seconds 60] [--rate-mb 10] [--read]
Needs the testbed up (python -m testkit.testbed up).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

# 1 MB of 1000-byte lines (999 × "x" + newline), written 10 times a second (or --rate-mb).
WRITER = (
    'head -c 999 /dev/zero | tr "\\0" x > /tmp/l; echo >> /tmp/l; '
    "for i in 0 1 2 3 4 5 6 7 8 9; do cat /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l >> /tmp/k; done; "
    "cat /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k > /tmp/mb; "
    "n=0; while true; do s=$(date +%s); i=0; while [ $i -lt {rate} ]; do cat /tmp/mb; i=$((i+1)); done; "
    'n=$((n+{rate})); echo $n > /tmp/count; while [ "$(date +%s)" = "$s" ]; do usleep 20000; done; done'
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RawClient:
    """A WebSocket client on a plain socket: it reads only when told to."""

    def __init__(self, port: int, path: str, rcvbuf: int = 65536):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("connection closed during the handshake")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"handshake refused: {head[:200]!r}")

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        size = bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        self.sock.sendall(bytes([0x80 | opcode]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send_json(self, data: dict) -> None:
        self.send_frame(0x1, json.dumps(data).encode())

    def _read(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def frames(self, timeout: float):
        """Yields (opcode, payload) until nothing arrives for `timeout` s or the server closes."""
        while True:
            deadline = time.monotonic() + timeout
            try:
                b0, b1 = self._read(2, deadline)
                length = b1 & 0x7F
                if length == 126:
                    length = struct.unpack("!H", self._read(2, deadline))[0]
                elif length == 127:
                    length = struct.unpack("!Q", self._read(8, deadline))[0]
                payload = self._read(length, deadline + 30)
            except (TimeoutError, EOFError, OSError):
                return
            yield b0 & 0x0F, payload
            if b0 & 0x0F == 8:
                return

    def close(self) -> None:
        self.sock.close()


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=60, help="how long the container writes and RSS is sampled (default 60)")
    p.add_argument("--rate-mb", type=int, default=10, help="MB per second the container writes (default 10)")
    p.add_argument("--read", action="store_true", help="the client reads everything (a client that keeps up)")
    p.add_argument("--engine", default="alpha", help="testbed engine (default alpha)")
    args = p.parse_args()

    bench = _common.setup("ws_slow_follower", args)
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from accounts.models import APIToken
    from containers import engine as dm_engine
    from containers import services
    from containers.engine import facts as engine_facts
    from containers.models import DockerHost
    from testkit.testbed import Testbed

    tb = Testbed.load()
    docker_engine = tb.engines[args.engine]
    name = f"dmb-slow-{bench.run_id}"
    client = None
    try:
        admin = get_user_model().objects.create_superuser("bench-admin", password="bench-pw-12345")
        _, raw = APIToken.issue(admin, name="bench")
        host = DockerHost.objects.create(name=f"bench-{args.engine}", url=docker_engine.unix_url)
        cid = docker_engine.docker(
            "run", "-d", "--network", "none", "--log-opt", "max-size=50m", "--log-opt", "max-file=2", "--name", name,
            tb.busybox_image, "sh", "-c", WRITER.replace("{rate}", str(args.rate_mb)), timeout=60,
        ).stdout.strip()
        sdk = dm_engine.client_for_host(host)
        try:
            row = services.apply_facts(host.pk, engine_facts.inspect_container(sdk, cid))
        finally:
            sdk.close()
        daphne = bench.start_daphne()
        time.sleep(2.0)  # daphne settles (imports, first connections) before the baseline
        samples: list[tuple[float, int]] = []
        start_rss = rss_kib(daphne.pid)

        client = RawClient(daphne.port, f"/ws/events/?token={raw}")
        client.send_json({"action": "logs.follow", "key": row.key, "tail": 0})
        follow_sent = time.strftime("%H:%M:%S")
        received = {"bytes": 0, "lines": 0}
        reader = None
        if args.read:
            def read_all():
                for opcode, payload in client.frames(timeout=5):
                    if opcode == 0x9:
                        client.send_frame(0xA, payload)  # a client that reads also answers daphne's pings
                    elif payload.startswith(b'{"type": "container.log"'):
                        received["lines"] += 1
                        received["bytes"] += len(json.loads(payload)["data"]["text"]) + 1
                        received["last"] = time.monotonic()
            reader = threading.Thread(target=read_all, daemon=True)
            reader.start()

        count_before = int(docker_engine.docker("exec", name, "cat", "/tmp/count", check=False).stdout.strip() or 0)
        t0 = time.monotonic()
        for second in range(1, args.seconds + 1):
            time.sleep(max(0.0, t0 + second - time.monotonic()))
            samples.append((time.monotonic() - t0, rss_kib(daphne.pid)))
        elapsed = time.monotonic() - t0
        count_after = int(docker_engine.docker("exec", name, "cat", "/tmp/count", check=False).stdout.strip() or 0)
        achieved = (count_after - count_before) / elapsed

        docker_engine.docker("rm", "-f", name, check=False, timeout=60)
        messages, errors, lines = 0, [], 0
        if args.read:
            reader.join(30)
            lines = received["lines"]
        else:
            for opcode, payload in client.frames(timeout=3):
                if opcode != 1:
                    continue
                messages += 1
                message = json.loads(payload)
                if message["type"] == "container.log":
                    lines += 1
                elif message["type"] == "error":
                    errors.append(message["data"])
        # What the web process says (its log): when it stopped the follow, and whether it closed the
        # connection meanwhile (daphne drops a client that answers no ping: every 20 s, 30 s to answer).
        log = daphne.log(200_000)
        stopped = [line for line in log.splitlines() if "stopped for bench-admin: the client is not reading" in line]
        closed = [line for line in log.splitlines() if "WSDISCONNECT" in line]
        rss = [kib for _, kib in samples]
        peak_at = samples[rss.index(max(rss))][0]
        mib = lambda kib: kib / 1024  # noqa: E731
        print(f"ws_slow_follower: {args.seconds} s, container writing {args.rate_mb} MB/s (achieved {achieved:.1f} MB/s), "
              f"client {'reads everything' if args.read else 'never reads'}, "
              f"DOCKMON_WS_SEND_BUFFER_BYTES={getattr(settings, 'DOCKMON_WS_SEND_BUFFER_BYTES', '(none)')}")
        print(f"daphne RSS: start {mib(start_rss):.1f} MiB, peak {mib(max(rss)):.1f} MiB (at {peak_at:.0f} s), "
              f"end {mib(rss[-1]):.1f} MiB")
        print("RSS every 5 s (MiB): " + " ".join(f"{mib(kib):.0f}" for _, kib in samples[4::5]))
        if args.read:
            span = received.get("last", t0) - t0
            print(f"client received {lines} log lines, {received['bytes'] / 1e6:.1f} MB of log text in {span:.1f} s "
                  f"({received['bytes'] / 1e6 / max(span, 0.001):.1f} MB/s)")
        else:
            print(f"follow sent at {follow_sent}; web process log: {stopped[0].split(' WARNING ')[0] + ' follow stopped (slow client)' if stopped else 'follow NOT stopped'}"
                  f"; {'connection closed by the server at ' + closed[0].split('[')[1].split(']')[0] if closed else 'connection still open'}")
            print(f"read after the run: {lines} log lines, then: {errors[0]['message'] if errors else '(no error message readable)'}")
        _common.emit_summary({
            "bench": "ws_slow_follower", "seconds": args.seconds, "rate_mb": args.rate_mb, "achieved_mb_s": round(achieved, 2),
            "read": args.read, "rss_start_mib": round(mib(start_rss), 1), "rss_peak_mib": round(mib(max(rss)), 1),
            "rss_end_mib": round(mib(rss[-1]), 1), "lines_read_after": lines, "error_reasons": [e.get("reason") for e in errors],
            "follow_stopped_in_log": bool(stopped), "server_closed": bool(closed),
            "machine": _common.machine(),
        })
        return 0
    finally:
        if client is not None:
            client.close()
        docker_engine.docker("rm", "-f", name, check=False, timeout=60)
        bench.finish()


if __name__ == "__main__":
    sys.exit(main())
