"""WebSocket /ws/events/: live events, each checked against the user's permissions.

Besides the broadcast stream a client may ask for (one handler each, containers/ws_handlers/):
- {"action": "subscribe", "hosts": [ids]}           only events of these hosts ([] = all)
- {"action": "logs.follow", "key": k, "tail": n}     → "container.log" messages; "logs.unfollow" stops
- {"action": "stats.subscribe", "hosts"|"keys": [...]} → "stats.sample" batches; "stats.unsubscribe"
- {"action": "profile.start", "key": k}              → "profile.sample" every second, saved every 10 s;
  {"action": "profile.stop", "session": id}; a disconnect closes and keeps the session.
Every message sent is a realtime.Envelope ({"type", "data", "ts"}).

Authorization is not a one-off at the handshake. Every DOCKMON_WS_RECHECK_SECONDS (and at once
when a grant, a group, a user or a token changes: `permissions.changed`) the socket reads again
what its user, token and session allow (containers/ws_access.py) and every stream obeys:
- the user, token or session no longer valid → an `error` message naming why, then close 4403;
- a followed container no longer followable (`operate`) → that follow ends with an `error`;
- a profiled container no longer visible → that profile stops ("access revoked") with an `error`;
- stats and events are filtered by the fresh visibility; stats subscriptions of hosts and
  containers no longer visible are dropped with an `error`.

Close codes: 4401 not signed in (handshake refused); 4403 access ended while open; 4008 the
client stopped reading and too much piled up for it; 4013 / 4011 from dockmon_site/ws_stack.py.
"""

from __future__ import annotations

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from containers.permissions import has_container_perm
from containers.streams import ByteBudget
from containers.ws_access import DENIED, load_access, session_digest
from containers.ws_handlers.events import EventStream, hosts_from_query
from containers.ws_handlers.logs import LogFollows
from containers.ws_handlers.profiles import Profiles
from containers.ws_handlers.stats import StatsStream
from dockmon_site import realtime

logger = logging.getLogger(__name__)

PERMISSIONS_CHANGED = "permissions.changed"
CLOSE_UNAUTHENTICATED = 4401
CLOSE_ACCESS_ENDED = 4403
CLOSE_TOO_SLOW = 4008

__all__ = ["EventsConsumer"]


class EventsConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.token_id = self.scope.get("token_id")
        self.read_only = bool(self.scope.get("token_read_only"))
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None) if self.token_id is None else None
        self.closing = False
        hosts = hosts_from_query(self.scope.get("query_string", b"").decode(errors="replace"))
        access = await database_sync_to_async(load_access)(user.pk, token_id=self.token_id, session_key=self.session_key)
        if access.denied:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user, self.visibility = access.user, access.visibility
        self.tasks: set[asyncio.Task] = set()
        self.recheck_lock = asyncio.Lock()
        self.flow = self.scope.get("dockmon.flow")
        self.budget = ByteBudget(settings.DOCKMON_WS_SEND_BUFFER_BYTES)
        self.events = EventStream(self, hosts)
        self.logs = LogFollows(self)
        self.stats = StatsStream(self)
        self.profiles = Profiles(self)
        self.actions = {
            "subscribe": self.events.subscribe,
            "ping": self._ping,
            "logs.follow": self.logs.follow,
            "logs.unfollow": self.logs.unfollow_action,
            "stats.subscribe": self.stats.subscribe,
            "stats.unsubscribe": self.stats.unsubscribe,
            "profile.start": self.profiles.start,
            "profile.stop": self.profiles.stop_action,
        }
        await self.channel_layer.group_add(realtime.BROADCAST_GROUP, self.channel_name)
        await self.accept()
        self.background = [asyncio.ensure_future(self._recheck_loop()), asyncio.ensure_future(self.logs.run_sender())]
        await self.reply("hello", {"user": user.username, "read_only": self.read_only})

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def disconnect(self, code):
        if not hasattr(self, "background"):
            return
        self.closing = True
        for task in self.background:
            task.cancel()
        await self._stop_streams("disconnected")
        try:
            await self.channel_layer.group_discard(realtime.BROADCAST_GROUP, self.channel_name)
        except Exception as exc:  # Redis down: the subscription goes with the connection anyway
            logger.info("group_discard failed on disconnect: %r", exc)

    async def _stop_streams(self, profile_reason: str) -> None:
        await self.stats.stop()
        await self.logs.stop_all()
        await self.profiles.stop_all(profile_reason)

    # --- sending ----------------------------------------------------------------------------
    async def send_text(self, text: str) -> None:
        await self.send(text_data=text)
        flow = self.flow
        if flow is not None:
            flow.sent(len(text))
            if flow.backlog > 4 * self.budget.limit and not self.closing:
                # Not even the small messages are being read: stop feeding a dead reader.
                logger.warning("closing a WebSocket of %s: %d bytes are waiting for the client", self.user, flow.backlog)
                self.closing = True
                self.spawn(self._close_for(CLOSE_TOO_SLOW, "client too slow"))

    async def _close_for(self, code: int, profile_reason: str) -> None:
        await self._stop_streams(profile_reason)
        await self.close(code=code)

    async def reply(self, type_: str, data: dict) -> None:
        await self.send_text(realtime.encode(type_, data))

    async def error(self, text: str, **extra) -> None:
        await self.reply("error", {"message": text, **extra})

    # --- client messages --------------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = json.loads(text_data or "")
        except ValueError:
            message = None
        if not isinstance(message, dict):
            await self.error("Messages must be JSON objects.")
            return
        if self.closing:
            return
        action = message.get("action")
        handler = self.actions.get(action)
        if handler is None:
            await self.error(f"Unknown action {action!r}.")
            return
        await handler(message)

    async def _ping(self, message):
        await self.reply("pong", {})

    @database_sync_to_async
    def container_for(self, key, action: str):
        """The container `key` if the user may `action` it (and see it), else None."""
        from containers.models import Container

        if not isinstance(key, str):
            return None
        container = Container.objects.select_related("host").filter(pk=key, removed_at__isnull=True).first()
        if container is None or not has_container_perm(self.user, "view", container):
            return None
        if action != "view" and not has_container_perm(self.user, action, container):
            return None
        return container

    # --- re-authorization -------------------------------------------------------------------
    async def _recheck_loop(self) -> None:
        interval = settings.DOCKMON_WS_RECHECK_SECONDS
        while not self.closing:
            await asyncio.sleep(interval)
            try:
                await self._reauthorize()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is away for a moment: try again on the next tick (the socket
                # keeps what it was allowed; a persistent failure is logged every tick).
                logger.warning("re-checking a WebSocket's access failed", exc_info=True)

    async def _reauthorize(self) -> bool:
        async with self.recheck_lock:
            if self.closing:
                return False
            followed = self.logs.keys()
            access = await database_sync_to_async(load_access)(
                self.user.pk, token_id=self.token_id, session_key=self.session_key, follow_keys=followed
            )
            if access.denied:
                await self._end(access.denied)
                return False
            self.user, self.visibility = access.user, access.visibility
            await self.logs.recheck(followed, access.followable)
            await self.profiles.recheck()
            await self.stats.recheck()
            return True

    async def _end(self, reason: str) -> None:
        """The user, token or session behind this socket is no longer valid: say why and close."""
        if self.closing:
            return
        self.closing = True
        await self.error(DENIED[reason], reason=reason)
        await self._close_for(CLOSE_ACCESS_ENDED, "access revoked")

    # --- channel-layer messages -------------------------------------------------------------
    async def dockmon_resync(self, event):
        """This web process's Redis connection came back after a failure: events may have been
        missed meanwhile, so the client should reload what it shows (dockmon_site/channel_layer.py)."""
        if not hasattr(self, "background") or self.closing:
            return  # not open (refused at the handshake) or closing
        await self.reply("stream.resync", {"reason": "The live stream was interrupted; reload the current state."})

    async def dockmon_event(self, event: realtime.LayerMessage):
        if not hasattr(self, "background") or self.closing:
            return
        if event.get("event_type") == PERMISSIONS_CHANGED:
            # Internal, never passed on. A logout names its session: that socket ends at once
            # (the session row may not be deleted yet); everyone else reads their access again.
            try:
                data = json.loads(event.get("text") or "{}").get("data") or {}
            except ValueError:
                data = {}
            if self.session_key and data.get("session") == session_digest(self.session_key):
                await self._end("logged_out")
                return
            await self._reauthorize()
            return
        payload = event.get("payload")
        if payload is not None:
            await self.stats.deliver(payload)
            return
        await self.events.deliver(event)
