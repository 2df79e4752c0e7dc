"""The event bus: WebSocket clients get an event before (and whatever) its subscribers do, and
every subscriber gets each committed event exactly once, in order, off the emitting thread."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import transaction

from accounts.models import APIToken
from containers import bus
from containers.models import Event
from testkit.testing import WSClient, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)
BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def subscribed():
    """subscribed(func) registers func on the bus for the test only."""
    added = []

    def add(func):
        added.append(bus.subscribe(func))
        return func

    yield add
    for func in added:
        bus.unsubscribe(func)


def test_a_blocked_and_a_raising_subscriber_do_not_delay_the_websocket_message(admin, daphne, subscribed, unique):
    """GIVEN a subscriber that raises and one that blocks until the test lets it go
    WHEN an event is emitted
    THEN the browser's WebSocket gets it while the blocked subscriber is still waiting
    (were publishing behind the subscribers, the message could never arrive), and the
    subscribers get it too once let go."""
    _, raw = APIToken.issue(admin, name="bus")
    client = WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/", headers={"Authorization": f"Token {raw}"})
    gate, seen = threading.Event(), []

    def raising(event):
        raise RuntimeError("subscriber bug")

    def blocked(event):
        if not gate.wait(30):
            raise AssertionError("never let go")
        seen.append(event.pk)

    subscribed(raising)
    subscribed(blocked)
    try:
        client.wait_for(lambda m: m["type"] == "hello")
        with bus.dispatch_mode("thread"):
            with transaction.atomic():
                event = bus.emit("system.test", category="system", message=f"live-{unique}")
            message = client.wait_for(lambda m: m["type"] == "system.test" and m["data"].get("message") == f"live-{unique}",
                                      timeout=10)
            assert message["data"]["event_id"] == event.pk and seen == []
            gate.set()
            assert bus.drain(10)
        assert seen == [event.pk]
    finally:
        gate.set()
        client.close()


def test_every_subscriber_gets_each_committed_event_once_in_order_even_after_one_raises(subscribed):
    """GIVEN two recording subscribers, one of which raises on every third event
    WHEN events are emitted outside a transaction, several in one transaction, without being
    stored (persist=False), and one in a transaction that rolls back
    THEN each subscriber gets every committed event exactly once, in emit order, on the bus's
    thread and after the commit (it can read the stored row); the rolled-back one reaches nobody."""
    calm, flaky, threads, stored = [], [], set(), []

    def record_calm(event):
        calm.append(event.data["n"])
        threads.add(threading.current_thread().name)
        if event.pk:
            stored.append(Event.objects.filter(pk=event.pk).exists())

    def record_flaky(event):
        flaky.append(event.data["n"])
        if event.data["n"] % 3 == 0:
            raise RuntimeError("every third event")

    subscribed(record_flaky)
    subscribed(record_calm)
    expected = []
    with bus.dispatch_mode("thread"):
        for n in range(60):
            if n == 30:
                with pytest.raises(RuntimeError), transaction.atomic():
                    bus.emit("system.test", category="system", data={"n": n})
                    raise RuntimeError("roll back")
                continue
            if n % 10 == 0:
                with transaction.atomic():
                    for m in range(n, n + 3):
                        bus.emit("system.test", category="system", data={"n": m})
                        expected.append(m)
                    assert not set(expected[-3:]) & set(calm)  # nothing delivered before the commit
                continue
            if n % 10 in (1, 2):
                continue  # emitted in the transaction above
            bus.emit("system.test", category="system", data={"n": n}, persist=n % 2 == 0)
            expected.append(n)
        assert bus.drain(30)
    assert calm == expected and flaky == expected
    assert threads == {"dockmon-bus"}
    assert stored and all(stored)


def test_pending_events_reach_their_subscribers_when_the_process_exits(tmp_path):
    """A process that emits and exits at once still hands its queued events to the subscribers
    (bounded wait at exit)."""
    out = tmp_path / "seen.txt"
    script = f"""
import time, django
django.setup()
from containers import bus

def slow(event):
    time.sleep(0.2)
    with open({str(out)!r}, "a") as f:
        f.write(event.data["n"] + "\\n")

bus.subscribe(slow)
for n in "abc":
    bus.emit("system.test", category="system", data={{"n": n}}, persist=False)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=subprocess_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_text().split() == ["a", "b", "c"]
