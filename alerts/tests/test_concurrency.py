"""Several workers evaluating the same events at once: no duplicate alert, occurrence or
notification (run this on PostgreSQL too; SQLite serialises writers anyway)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from alerts import evaluator, notify
from alerts.models import Alert, Notification
from alerts.tests.conftest import make_channel, make_rule
from containers.models import Container, Event


def _in_threads(n: int, work) -> list:
    barrier = threading.Barrier(n)
    errors: list = []

    def run(index):
        try:
            barrier.wait(timeout=30)
            work(index)
        except Exception as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def _scenario(rows, unique, receiver):
    """Eight containers, each with a start and then a stop logged like the monitor logs them
    (handed to no queue: the two workers are the only evaluators). Whatever order a worker
    applies them in, each container ends with exactly one open container_stopped alert (a start
    applied after the later stop is stale) and one container_started alert."""
    hook = make_channel("webhook", name="conc", url=receiver.url("/conc"))
    stopped = make_rule("container_stopped", [hook])
    started = make_rule("container_started", [hook], name="started", cooldown_seconds=0)
    containers = [rows.container] + [
        Container.objects.create(host=rows.host, container_id=f"{i:02d}{unique}" * 6, short_id=f"{i:02d}{unique}ab"[:12],
                                 name=f"c{i}-{unique}", state="exited", exit_code=1)
        for i in range(7)
    ]
    ids = []
    for c in containers:
        for data in ({"state": "running", "previous_state": "created", "exit_code": None},
                     {"state": "exited", "previous_state": "running", "exit_code": 1}):
            ids.append(Event.objects.create(category="container", type="container.state", host=rows.host, container_key=c.key,
                                            data=data).pk)
    return stopped, started, containers, ids


def _assert_exactly_once(stopped, started, containers, receiver):
    for c in containers:
        assert Alert.objects.filter(rule=stopped, container_id=c.key).count() == 1
        assert Alert.objects.filter(rule=stopped, container_id=c.key, state="open", occurrences=1).count() == 1
        assert Alert.objects.filter(rule=started, container_id=c.key).count() == 1
        assert Alert.objects.filter(rule=started, container_id=c.key, occurrences=1).count() == 1
    assert Alert.objects.count() == 2 * len(containers)
    keys = list(Notification.objects.values_list("alert_id", "channel_id", "event", "sequence"))
    assert len(keys) == len(set(keys)) == 2 * len(containers)
    assert set(Notification.objects.values_list("status", "event", "attempts")) == {("sent", "fired", 1)}
    # Exactly one request per notification reached the receiver.
    assert len(receiver.on("/conc")) == 2 * len(containers)
    assert sorted(r["body"]["alert"]["id"] for r in receiver.on("/conc")) == sorted(Alert.objects.values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_two_worker_threads_evaluating_the_same_events_produce_no_duplicates(eager, receiver, rows, unique):
    stopped, started, containers, ids = _scenario(rows, unique, receiver)

    def work(index):
        order = ids if index % 2 == 0 else list(reversed(ids))
        for pk in order:
            evaluator.evaluate_event(pk)
        notify.dispatch_due(inline=True)

    errors = _in_threads(2, work)
    assert errors == []
    notify.dispatch_due(inline=True)
    _assert_exactly_once(stopped, started, containers, receiver)


WORKER = """
import os, sys, time
import django

django.setup()
from alerts import evaluator, notify

go, ids = sys.argv[1], [int(pk) for pk in sys.argv[2].split(",")]
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.005)
applied = sum(evaluator.evaluate_event(pk) for pk in ids)
sent = notify.dispatch_due(inline=True)
print("applied", applied, "swept", sent, flush=True)
"""


@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_evaluating_the_same_events_produce_no_duplicates(receiver, rows, unique, tmp_path):
    """Two OS processes (separate interpreters and database connections, as two Celery workers
    on two machines would be), each applying every event, in opposite orders, started together."""
    import subprocess
    import sys

    from testkit import testing

    stopped, started, containers, ids = _scenario(rows, unique, receiver)
    go = tmp_path / "go"
    env = testing.subprocess_env(CELERY_TASK_ALWAYS_EAGER="true")  # each sends what it queued, inline
    orders = [ids, list(reversed(ids))]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(go), ",".join(map(str, order))], cwd=testing.BASE_DIR, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for order in orders]
    try:
        go.write_text("go")
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    applied = [int(out.split("applied", 1)[1].split()[0]) for out in outputs]
    # Every decision was applied once, by one or the other: 8 stops fired, 8 starts fired, and
    # each stale or duplicate application was a no-op.
    assert sum(applied) == 2 * len(containers), outputs
    notify.dispatch_due(inline=True)
    _assert_exactly_once(stopped, started, containers, receiver)


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_deliver_each_notification_once(receiver, rows):
    hook = make_channel("webhook", name="send-once", url=receiver.url("/once"))
    notes = [Notification.objects.create(channel=hook, event="fired", title=f"n{i}", body="b") for i in range(20)]

    def work(index):
        for note in notes if index % 2 else reversed(notes):
            notify.send(note.pk)

    assert _in_threads(4, work) == []
    assert sorted(r["body"]["title"] for r in receiver.on("/once")) == sorted(n.title for n in notes)
    assert Notification.objects.filter(status="sent", attempts=1).count() == 20
