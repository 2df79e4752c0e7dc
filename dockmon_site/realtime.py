"""The realtime publisher: the only code that sends to the channel layer.

Messages go to one broadcast group; every WebSocket consumer filters each message against its
user's permissions (see containers/consumers.py). Every message a browser receives is an
Envelope built by envelope() here; a published one is serialised to JSON once, so fan-out to
many clients costs no re-encoding.

Publishing is fire-and-forget from any thread: messages are queued to one background thread per
process that owns an event loop (and so keeps its Redis connections) and sends them in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from datetime import UTC, datetime
from typing import Any, TypedDict

from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder

logger = logging.getLogger(__name__)

BROADCAST_GROUP = "dockmon.events"
CONSUMER_HANDLER = "dockmon.event"


def utc_iso(value: datetime | None = None) -> str:
    value = value or datetime.now(UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Encoder(DjangoJSONEncoder):
    def default(self, o):
        if isinstance(o, datetime):
            return utc_iso(o)
        return super().default(o)


def stats_group(host_id) -> str:
    """Stats samples go only to clients that asked for them, per host."""
    return f"stats.{host_id}"


class Envelope(TypedDict):
    """What a browser receives, as JSON: every WebSocket message has this shape."""

    type: str
    data: dict[str, Any]
    ts: str


class LayerMessage(TypedDict, total=False):
    """What travels on the channel layer: the client text plus what consumers route and filter on.

    None of the routing fields (host, key, user, group) is part of `text`."""

    type: str  # the consumer method that handles it (CONSUMER_HANDLER)
    text: str
    event_type: str
    host: str
    key: str
    user: int | None  # only this user's sockets get it (the progress of their bulk job)
    group: str
    payload: Envelope  # group messages (stats) only: filtered per sample by consumers


def envelope(type_: str, data: dict[str, Any], ts: datetime | str | None = None) -> Envelope:
    """The one place a WebSocket message is assembled (`ts` may already be an ISO string)."""
    return {"type": type_, "data": data, "ts": ts if isinstance(ts, str) else utc_iso(ts)}


def to_text(message: Envelope) -> str:
    return json.dumps(message, cls=_Encoder, separators=(",", ":"))


def encode(type_: str, data: dict[str, Any], ts: datetime | str | None = None) -> str:
    return to_text(envelope(type_, data, ts))


def build_message(
    type_: str, data: dict[str, Any], *, ts: datetime | None = None, host_id=None, key: str = "", group: str = "", user=None
) -> LayerMessage:
    """The channel-layer message: the client text plus what consumers need to authorise it."""
    text = encode(type_, data, ts)
    message: LayerMessage = {
        "type": CONSUMER_HANDLER,
        "text": text,
        "event_type": type_,
        "host": str(host_id) if host_id else "",
        "key": key or "",
        "user": user,
        "group": group or BROADCAST_GROUP,
    }
    if group:
        # Group messages (stats) are filtered per sample by consumers, so they carry the data too.
        message["payload"] = json.loads(text)
    return message


class _Publisher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._pending = 0
        self._idle = threading.Condition()

    def _ensure(self) -> None:
        if self._pid == os.getpid() and self._loop is not None:
            return
        with self._lock:
            if self._pid == os.getpid() and self._loop is not None:
                return
            ready = threading.Event()

            def run() -> None:
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
                self._loop = loop
                self._queue = asyncio.Queue()
                ready.set()
                loop.run_until_complete(self._drain())

            self._pending = 0
            thread = threading.Thread(target=run, name="dockmon-publisher", daemon=True)
            thread.start()
            ready.wait(5)
            self._pid = os.getpid()

    async def _drain(self) -> None:
        layer = get_channel_layer()
        while True:
            message = await self._queue.get()
            try:
                await asyncio.wait_for(layer.group_send(message.get("group") or BROADCAST_GROUP, message), timeout=10)
            except Exception:  # a lost message must not stop the ones behind it
                logger.warning("could not publish %s", message.get("event_type"), exc_info=True)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def publish(self, message: dict) -> None:
        self._ensure()
        with self._idle:
            self._pending += 1
        self._loop.call_soon_threadsafe(self._queue.put_nowait, message)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far has been handed to the channel layer."""
        if self._loop is None or self._pid != os.getpid():
            return True
        with self._idle:
            return self._idle.wait_for(lambda: self._pending <= 0, timeout)


_publisher = _Publisher()


def publish(
    type_: str, data: dict[str, Any], *, ts: datetime | None = None, host_id=None, key: str = "", group: str = "", user=None
) -> None:
    """Send one message to every permitted WebSocket client (of `group`, default: everyone;
    with `user`, only that user's clients)."""
    _publisher.publish(build_message(type_, data, ts=ts, host_id=host_id, key=key, group=group, user=user))


def flush(timeout: float = 5.0) -> bool:
    return _publisher.flush(timeout)
