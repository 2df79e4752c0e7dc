"""The event bus: the one way anything that happens is announced.

emit() does three things, in order: it writes the event-log row, hands the event to the
subscribers registered in AppConfig.ready() (alerts, auto-restart...), and publishes it to
WebSocket clients once the surrounding transaction commits. Producers never call subscribers
directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from dockmon_site import counters, realtime

logger = logging.getLogger(__name__)

_subscribers: list[Callable] = []


def subscribe(func: Callable) -> Callable:
    """Register func(event) to be called for every emitted event (idempotent)."""
    if func not in _subscribers:
        _subscribers.append(func)
    return func


def unsubscribe(func: Callable) -> None:
    if func in _subscribers:
        _subscribers.remove(func)


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
):
    """Record and announce one event. Returns the Event (saved when persist=True)."""
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
    for subscriber in list(_subscribers):
        try:
            subscriber(event)
        except Exception:  # one broken subscriber must not stop the others or the producer
            logger.exception("event subscriber %r failed on %s", subscriber, type_)
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
    transaction.on_commit(
        lambda: realtime.publish(type_, payload, ts=event.ts, host_id=host_id, key=key, group=group)
    )
    return event
