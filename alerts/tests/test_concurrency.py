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


@pytest.mark.django_db(transaction=True)
def test_two_workers_evaluating_the_same_events_produce_no_duplicates(eager, receiver, rows, unique):
    hook = make_channel("webhook", name="conc", url=receiver.url("/conc"))
    rule = make_rule("container_stopped", [hook])
    restarted = make_rule("container_started", [hook], name="started", cooldown_seconds=0)
    containers = [rows.container] + [
        Container.objects.create(host=rows.host, container_id=f"{i:02d}{unique}" * 6, short_id=f"{i:02d}{unique}ab"[:12],
                                 name=f"c{i}-{unique}", state="exited", exit_code=1)
        for i in range(7)
    ]
    # Logged like the monitor logs them, but not handed to any queue: the two "workers" below
    # are the only evaluators.
    events = []
    for c in containers:
        events.append(Event.objects.create(category="container", type="container.state", host=rows.host, container_key=c.key,
                                           data={"state": "exited", "previous_state": "running", "exit_code": 1}))
        events.append(Event.objects.create(category="container", type="container.state", host=rows.host, container_key=c.key,
                                           data={"state": "running", "previous_state": "created", "exit_code": None}))
    ids = [e.pk for e in events]

    def work(index):
        order = ids if index % 2 == 0 else list(reversed(ids))
        for pk in order:
            evaluator.evaluate_event(pk)
        notify.dispatch_due(inline=True)

    errors = _in_threads(2, work)
    assert errors == []
    notify.dispatch_due(inline=True)
    # One stopped alert per container at most (a start evaluated after its stop resolves it;
    # one evaluated first makes the stop stale: either way never two), one started alert each.
    for c in containers:
        stopped = Alert.objects.filter(rule=rule, container_id=c.key)
        assert stopped.count() <= 1
        assert all(a.occurrences == 1 for a in stopped)
        assert Alert.objects.filter(rule=restarted, container_id=c.key, occurrences=1).count() == 1
    keys = list(Notification.objects.values_list("alert_id", "channel_id", "event", "sequence"))
    assert len(keys) == len(set(keys))
    assert Notification.objects.exclude(status="sent").count() == 0
    # Exactly one request per notification reached the receiver.
    assert len(receiver.on("/conc")) == Notification.objects.count()


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
