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


def test_a_process_killed_before_its_subscribers_ran_leaves_the_event_to_another_process(subscribed, settings, tmp_path):
    """GIVEN a process that stores an event and is killed (SIGKILL) while its subscriber runs
    THEN the event's outbox row outlives it, and once the claim is older than the lease another
    process's sweep runs the subscribers with that event, once: a second sweep finds nothing."""
    import os
    import signal
    import time

    from containers.models import EventDispatch

    marker = tmp_path / "running"
    script = f"""
import time, django
django.setup()
from containers import bus

def stuck(event):
    open({str(marker)!r}, "w").write(str(event.pk))
    time.sleep(600)

bus.subscribe(stuck)
bus.emit("system.test", category="system", message="killed before its subscribers ran")
time.sleep(600)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=BASE_DIR, env=subprocess_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the subprocess never ran its subscriber"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    event_id = int(marker.read_text())
    [row] = EventDispatch.objects.all()
    assert row.event_id == event_id and row.claimed_by.split(":")[1] == str(proc.pid)

    seen = []
    subscribed(lambda event: seen.append((event.pk, event.type)))
    assert bus.sweep() == 0 and seen == []  # the claim is fresh: the owner may still be at it
    settings.DOCKMON_BUS_LEASE_SECONDS = 0
    assert bus.sweep() == 1
    assert seen == [(event_id, "system.test")]
    assert not EventDispatch.objects.exists()
    assert bus.sweep() == 0 and seen == [(event_id, "system.test")]


def test_an_event_another_process_took_over_is_not_run_again_by_its_first_owner(subscribed):
    """The dispatcher renews its claim before it runs a stored event: when a sweep elsewhere has
    claimed the row meanwhile (this process looked dead), it leaves the event to that process."""
    from django.utils import timezone

    from containers.models import EventDispatch

    seen = []
    subscribed(lambda event: seen.append(event.pk))
    mine = Event.objects.create(category="system", type="system.test")
    EventDispatch.objects.create(event=mine, claimed_by=bus._claimant(), claimed_at=timezone.now())
    taken = Event.objects.create(category="system", type="system.test")
    EventDispatch.objects.create(event=taken, claimed_by="elsewhere:1:abc", claimed_at=timezone.now())
    bus._run_durable(mine, tuple(bus._subscribers))
    bus._run_durable(taken, tuple(bus._subscribers))
    assert seen == [mine.pk]
    assert list(EventDispatch.objects.values_list("event_id", flat=True)) == [taken.pk]


def test_a_delivered_event_leaves_no_outbox_row_and_a_rolled_back_one_none_either(subscribed):
    seen = []
    subscribed(lambda event: seen.append(event.type))
    from containers.models import EventDispatch

    bus.emit("system.kept", category="system")
    with pytest.raises(RuntimeError), transaction.atomic():
        bus.emit("system.dropped", category="system")
        assert EventDispatch.objects.count() == 1
        raise RuntimeError("roll back")
    assert bus.drain(10)
    assert seen == ["system.kept"] and not EventDispatch.objects.exists()
