"""The event bus: the one way anything that happens is announced.

emit() writes the event-log row and, once the surrounding transaction commits (at once outside
one), does two things in this order: it publishes the event to WebSocket clients, then hands it
to the subscribers registered in AppConfig.ready() (alerts, auto-restart...). Producers never
call subscribers directly.

Subscribers run on one dispatcher thread per process, fed by a bounded in-process queue, so no
subscriber (rule evaluation, a notification to a dead receiver, auto-restart bookkeeping) can
delay what the browser sees or hold the producer's transaction open. One FIFO thread keeps
every process's events in emit order, which the evaluator relies on (update.started suppresses
before the stop it causes; a container's stop is evaluated before its start).

A stored event is durable: an outbox row (EventDispatch) commits in the same transaction,
claimed by the emitting process, and is deleted once the subscribers have run. A process killed
before that leaves the row; once its claim is older than DOCKMON_BUS_LEASE_SECONDS, the
dispatcher of any other process (each sweeps while idle, every SWEEP_SECONDS; the monitor and
workers from their start) claims it with a compare-and-set and runs the subscribers. Before it
runs an event whose claim is older than half the lease (a long backlog), the dispatcher renews
the claim the same way, so an event runs in one process only — twice only if one subscriber
call outlasts the lease. Each subscriber gets each
committed event once: an exception is logged and the next subscriber and event still run. An
event whose transaction rolls back reaches nobody. Events emitted with persist=False (never
stored) have no outbox row and are lost with a process killed before they ran.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery.signals import worker_process_shutdown, worker_ready
from django.db import connections, transaction
from django.utils import timezone

from dockmon_site import counters, realtime

logger = logging.getLogger(__name__)

# Producers wait (never drop) when the subscribers are this far behind.
MAX_PENDING = 10_000
SHUTDOWN_WAIT_SECONDS = 10.0
# How often an idle dispatcher looks for events a dead process left in the outbox.
SWEEP_SECONDS = 30.0

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


_claimant_of: tuple[int, str] = (0, "")


def _claimant() -> str:
    """Who holds an outbox row: this process (a pid alone could come back after a restart)."""
    global _claimant_of
    if _claimant_of[0] != os.getpid():  # set once per process, again in a forked child
        _claimant_of = (os.getpid(), f"{socket.gethostname()[:48]}:{os.getpid()}:{uuid.uuid4().hex[:12]}")
    return _claimant_of[1]


def _run_durable(event, subscribers, claimed: float | None = None) -> None:
    """Run a stored event's subscribers unless another process took its outbox row; then drop the row.

    `claimed`: when (time.monotonic()) this process wrote its claim, if it did."""
    from django.conf import settings

    from containers.models import EventDispatch

    me = _claimant()
    # A sweep elsewhere takes only claims older than the lease: a younger one of ours is still ours.
    # An older one is renewed first (compare-and-set); if another process took it, it is theirs to run.
    if claimed is None or time.monotonic() - claimed > settings.DOCKMON_BUS_LEASE_SECONDS / 2:
        if not EventDispatch.objects.filter(pk=event.pk, claimed_by=me).update(claimed_at=timezone.now()):
            return
    _deliver(event, subscribers)
    EventDispatch.objects.filter(pk=event.pk, claimed_by=me).delete()


def sweep(limit: int = 200) -> int:
    """Run the subscribers of stored events that another process took and never finished (it was
    killed, or stalls past the lease). Returns how many events this process took over."""
    from django.conf import settings

    from containers.models import Event, EventDispatch

    me = _claimant()
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.DOCKMON_BUS_LEASE_SECONDS)
    stale = list(
        EventDispatch.objects.filter(claimed_at__lt=cutoff).exclude(claimed_by=me)
        .values_list("event_id", "claimed_by", "claimed_at")[:limit]
    )
    taken = 0
    subscribers = tuple(_subscribers)
    for event_id, owner, claimed_at in stale:
        # Compare-and-set: of several processes sweeping at once, one wins each row.
        if not EventDispatch.objects.filter(pk=event_id, claimed_by=owner, claimed_at=claimed_at).update(
                claimed_by=me, claimed_at=timezone.now()):
            continue
        event = Event.objects.filter(pk=event_id).first()
        if event is None:
            continue
        logger.warning("running the subscribers of event %s (%s), left unfinished by %s", event_id, event.type, owner)
        taken += 1
        _run_durable(event, subscribers)
    return taken


class _Dispatcher:
    """One FIFO queue and the thread that empties it, for one process. While idle it sweeps the
    outbox for events a dead process left behind."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.pending: deque = deque()
        self.busy = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="dockmon-bus", daemon=True)
        self.thread.start()

    def put(self, event, subscribers, claimed: float | None = None) -> None:
        """Queue an event; `claimed` (time.monotonic()) when its outbox row was written by this process."""
        with self.cond:
            # The dispatcher itself never waits: its subscribers' own events would deadlock it.
            while len(self.pending) >= MAX_PENDING and threading.current_thread() is not self.thread:
                if not self.cond.wait(5):
                    logger.warning("event subscribers are %d events behind; %s waits", len(self.pending), event.type)
            self.pending.append((event, subscribers, claimed))
            self.cond.notify_all()

    def _run(self) -> None:
        swept_at = 0.0
        while True:
            with self.cond:
                while not self.pending:
                    self.busy = False
                    self.cond.notify_all()
                    if _mode == "thread" and time.monotonic() - swept_at >= SWEEP_SECONDS:
                        break
                    self.cond.wait(SWEEP_SECONDS)
                if not self.pending:
                    item = None
                else:
                    item = self.pending.popleft()
                self.busy = True
                self.cond.notify_all()
            if item is None:
                swept_at = time.monotonic()
                self._sweep()
                continue
            event, subscribers, claimed = item
            if claimed is not None:
                try:
                    _run_durable(event, subscribers, claimed)
                except Exception:  # the database is in trouble: the row stays for a sweep
                    logger.exception("could not run the subscribers of %s", event.type)
            else:
                _deliver(event, subscribers)
            with self.cond:
                idle = not self.pending
            if idle:
                # No connection held between bursts (and none left open when a test database is dropped).
                connections.close_all()

    def _sweep(self) -> None:
        try:
            sweep()
        except Exception as exc:  # no database yet (migrate), or it is down: the next sweep retries
            logger.debug("outbox sweep failed: %s", exc)
        finally:
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


def start() -> None:
    """Start this process's dispatcher now (a long-running process calls this at boot, so that it
    sweeps the outbox even before it emits anything)."""
    _get_dispatcher()


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
# A worker sweeps the outbox from its start (so does the monitor: its command calls start()).
worker_ready.connect(lambda **kwargs: start(), weak=False)


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
    from containers.models import Container, Event, EventDispatch

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
    subscribers = tuple(_subscribers)
    mode = _mode
    # A stored event is durable: its outbox row commits with it, so its subscribers run even if
    # this process dies before they do (another process's sweep runs them).
    durable = persist and bool(subscribers) and mode != "inline"
    claimed = None
    if persist:
        with transaction.atomic(savepoint=False):
            event.save()
            if durable:
                EventDispatch.objects.create(event=event, claimed_by=_claimant(), claimed_at=timezone.now())
                claimed = time.monotonic()
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

    def after_commit() -> None:
        try:
            realtime.publish(type_, payload, ts=event.ts, host_id=host_id, key=key, group=group, user=user)
        except Exception:  # the subscribers still get the event
            logger.exception("could not publish %s", type_)
        if mode == "inline" or not subscribers:
            return
        dispatcher = _get_dispatcher()
        dispatcher.put(event, subscribers, claimed)
        if mode == "wait" and threading.current_thread() is not dispatcher.thread and not dispatcher.drain(30):
            logger.warning("subscribers still busy 30 s after %s", type_)

    transaction.on_commit(after_commit)
    if mode == "inline":
        _deliver(event, subscribers)
    return event
