"""logs.follow backpressure, live: daphne, a container writing ~10 MB/s, a client that never
reads. (The figures over a minute: bench/ws_slow_follower.py, BENCHMARKS.md.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from accounts.models import APIToken

pytestmark = [pytest.mark.trust, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# 1000-byte lines, 10 × 1 MB each second.
LOUD = (
    'head -c 999 /dev/zero | tr "\\0" x > /tmp/l; echo >> /tmp/l; '
    "for i in 0 1 2 3 4 5 6 7 8 9; do cat /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l >> /tmp/k; done; "
    "cat /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k /tmp/k > /tmp/mb; "
    'while true; do s=$(date +%s); for i in 0 1 2 3 4 5 6 7 8 9; do cat /tmp/mb; done; '
    'while [ "$(date +%s)" = "$s" ]; do usleep 20000; done; done'
)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _web_log(daphne) -> str:
    try:
        return daphne.log_path.read_text(errors="replace")
    except OSError:
        return ""


def _connect(daphne, raw: str):
    from websockets.sync.client import connect

    # max_queue: the client library stops reading the socket once 4 messages wait unread, so
    # not reading here means not reading at the TCP level; no keepalive pings of its own.
    ws = connect(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={raw}", max_queue=4, ping_interval=None, max_size=None).__enter__()
    assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    return ws


def _read_all(ws, idle: float = 3.0) -> list[dict]:
    messages = []
    while True:
        try:
            messages.append(json.loads(ws.recv(timeout=idle)))
        except TimeoutError:
            return messages


@pytest.fixture
def loud(admin, make_host, alpha, run_container, sync_container, unique):
    host = make_host(alpha)
    return sync_container(host, run_container(alpha, f"loud-{unique}", "sh", "-c", LOUD,
                                              extra=("--log-opt", "max-size=20m", "--log-opt", "max-file=2")))


def test_a_client_that_never_reads_is_dropped_with_a_message_and_memory_stays_flat(admin, loud, daphne):
    """GIVEN a container writing ~10 MB/s and a client following it that stops reading
    WHEN 12 s pass
    THEN the web process has not grown by more than a few MiB (without backpressure it keeps
    everything for the client: ~10 MB/s), and when the client reads again it finds the lines it
    was sent, then an `error` (reason slow_client) for that follow, and no line after it; the
    socket itself still answers."""
    _, raw = APIToken.issue(admin)
    ws = _connect(daphne, raw)
    before = _rss_mib(daphne.pid)
    ws.send(json.dumps({"action": "logs.follow", "key": loud.key}))
    time.sleep(12)
    # The drop comes once the socket's buffer has stayed full for 2 s; on a loaded machine the
    # container may write well below 10 MB/s, so give it until the web process says it stopped.
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and "the client is not reading" not in _web_log(daphne):
        time.sleep(0.5)
    grown = _rss_mib(daphne.pid) - before

    messages = _read_all(ws)
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["data"]["reason"] for e in errors] == ["slow_client"], errors
    assert errors[0]["data"]["key"] == loud.key and "not reading fast enough" in errors[0]["data"]["message"]
    dropped_at = messages.index(errors[0])
    lines = [m for m in messages[:dropped_at] if m["type"] == "container.log"]
    assert lines and len(lines[0]["data"]["text"]) == 999
    assert not [m for m in messages[dropped_at:] if m["type"] == "container.log"]
    print(f"web process grew {grown:.1f} MiB; {len(lines)} lines sent before the drop")
    assert grown < 40, f"the web process grew {grown:.1f} MiB"
    ws.send(json.dumps({"action": "ping"}))
    assert json.loads(ws.recv(timeout=10))["type"] == "pong"
    ws.close()


def test_a_client_that_reads_is_not_dropped(admin, loud, daphne):
    _, raw = APIToken.issue(admin)
    ws = _connect(daphne, raw)
    ws.send(json.dumps({"action": "logs.follow", "key": loud.key}))
    received, errors = 0, []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == "container.log":
            received += 1
        elif message["type"] == "error":
            errors.append(message)
    assert not errors and received > 1000, (received, errors)
    ws.close()
