"""The event bus: the one way anything that happens is announced.

emit() writes the event-log row and, once the surrounding transaction commits (at once outside
one), does two things in this order: it publishes the event to WebSocket clients, then hands it
to the subscribers registered in AppConfig.ready() (alerts, auto-restart...). Producers never
call subscribers directly.

Subscribers run on one dispatcher thread per process, fed by a bounded in-process queue, so no
subscriber (rule evaluation, a notification to a dead receiver, auto-restart bookkeeping) can
delay what the browser sees or hold the producer's transaction open. Why a thread and not an
outbox or a Celery task: subscribers also get events that are never stored (persist=False) and
events from processes with no worker (the monitor); they are already cheap hand-offs (alerts
queue a Celery task after their own checks), and one FIFO thread keeps every process's events in
emit order, which the evaluator relies on (update.started suppresses before the stop it causes;
a container's stop is evaluated before its start). Each subscriber gets each committed event
exactly once: an exception is logged and the next subscriber and event still run. An event
whose transaction rolls back reaches nobody. On exit the queue is drained (bounded wait); a
process killed outright loses what was still queued, as it would lose the Celery hand-offs.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery.signals import worker_process_shutdown
from django.db import connections, transaction
from django.utils import timezone

from dockmon_site import counters, realtime

logger = logging.getLogger(__name__)

# Producers wait (never drop) when the subscribers are this far behind.
MAX_PENDING = 10_000
SHUTDOWN_WAIT_SECONDS = 10.0

_subscribers: list[Callable] = []
# "thread" (always, outside tests); tests may pick "wait" (emit returns once the dispatcher has
# handled the event) or "inline" (subscribers run in the emitter's thread and transaction, for
# tests whose rows sit in a test transaction that never commits).
_mode = "thread"


def subscribe(func: Callable) -> Callable:
    """Register func(event) to be called for every emitted event (idempotent)."""
    if func not in _subscribers:
        _subscribers.append(func)
    return func


def unsubscribe(func: Callable) -> None:
    if func in _subscribers:
        _subscribers.remove(func)


def _deliver(event, subscribers) -> None:
    for subscriber in subscribers:
        try:
            subscriber(event)
        except Exception:  # one broken subscriber must not stop the others or the next event
            logger.exception("event subscriber %r failed on %s", subscriber, event.type)


class _Dispatcher:
    """One FIFO queue and the thread that empties it, for one process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.pending: deque = deque()
        self.busy = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="dockmon-bus", daemon=True)
        self.thread.start()

    def put(self, event, subscribers) -> None:
        with self.cond:
            # The dispatcher itself never waits: its subscribers' own events would deadlock it.
            while len(self.pending) >= MAX_PENDING and threading.current_thread() is not self.thread:
                if not self.cond.wait(5):
                    logger.warning("event subscribers are %d events behind; %s waits", len(self.pending), event.type)
            self.pending.append((event, subscribers))
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.pending:
                    self.busy = False
                    self.cond.notify_all()
                    self.cond.wait()
                event, subscribers = self.pending.popleft()
                self.busy = True
                self.cond.notify_all()
            _deliver(event, subscribers)
            with self.cond:
                idle = not self.pending
            if idle:
                # No connection held between bursts (and none left open when a test database is dropped).
                connections.close_all()

    def drain(self, timeout: float) -> bool:
        if threading.current_thread() is self.thread:
            return not self.pending
        with self.cond:
            return self.cond.wait_for(lambda: not self.pending and not self.busy, timeout)


_dispatcher: _Dispatcher | None = None
_lock = threading.Lock()


def _get_dispatcher() -> _Dispatcher:
    global _dispatcher
    if _dispatcher is None or _dispatcher.pid != os.getpid():  # a forked child starts its own
        with _lock:
            if _dispatcher is None or _dispatcher.pid != os.getpid():
                _dispatcher = _Dispatcher()
    return _dispatcher


def drain(timeout: float = 10.0) -> bool:
    """Wait until every event handed over so far has reached its subscribers; False on timeout."""
    dispatcher = _dispatcher
    if dispatcher is None or dispatcher.pid != os.getpid():
        return True
    return dispatcher.drain(timeout)


@atexit.register
def _drain_at_exit(**kwargs) -> None:
    if not drain(SHUTDOWN_WAIT_SECONDS) and _dispatcher is not None:
        logger.warning("exiting with %d events not yet handed to subscribers", len(_dispatcher.pending))


# Celery pool processes may end without running atexit handlers.
worker_process_shutdown.connect(_drain_at_exit, weak=False)


@contextlib.contextmanager
def dispatch_mode(mode: str):
    """Tests only: "thread" (the real thing), "wait" or "inline" (see _mode) inside the block."""
    global _mode
    if mode not in ("thread", "wait", "inline"):
        raise ValueError(mode)
    before, _mode = _mode, mode
    try:
        yield
    finally:
        _mode = before


def emit(
    type_: str,
    *,
    category: str,
    message: str = "",
    severity: str = "info",
    host=None,
    container=None,
    data: dict[str, Any] | None = None,
    actor=None,
    persist: bool = True,
    ts: datetime | None = None,
    group: str = "",
    user=None,
):
    """Record and announce one event. Returns the Event (saved when persist=True).

    With `user` (a user id) only that user's WebSocket clients are told."""
    from containers.models import Container, Event

    data = dict(data or {})
    host_id = getattr(host, "pk", host) if host is not None else None
    if isinstance(container, Container):
        key, name = container.key, container.name
        host_id = host_id or container.host_id
    else:
        key, name = (container or ""), data.get("name", "")
    event = Event(
        ts=ts or timezone.now(),
        category=category,
        type=type_,
        severity=severity,
        host_id=host_id,
        container_key=key,
        container_name=name or "",
        message=message,
        data=data,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
    )
    if persist:
        event.save()
    if type_ != "stats.sample":
        counters.count(counters.EVENTS_KEY, type_)
    payload = dict(data)
    if key:
        payload.setdefault("key", key)
    if host_id:
        payload.setdefault("host", str(host_id))
    if persist:
        payload.setdefault("event_id", event.pk)
    if message:
        payload.setdefault("message", message)
    payload.setdefault("severity", severity)
    subscribers = tuple(_subscribers)
    mode = _mode

    def after_commit() -> None:
        try:
            realtime.publish(type_, payload, ts=event.ts, host_id=host_id, key=key, group=group, user=user)
        except Exception:  # the subscribers still get the event
            logger.exception("could not publish %s", type_)
        if mode == "inline" or not subscribers:
            return
        dispatcher = _get_dispatcher()
        dispatcher.put(event, subscribers)
        if mode == "wait" and threading.current_thread() is not dispatcher.thread and not dispatcher.drain(30):
            logger.warning("subscribers still busy 30 s after %s", type_)

    transaction.on_commit(after_commit)
    if mode == "inline":
        _deliver(event, subscribers)
    return event
