"""WebSocket /ws/events/: live events, each checked against the user's permissions."""

from __future__ import annotations

import json
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from dockmon_site import realtime
from dockmon_site.permissions import Visibility

logger = logging.getLogger(__name__)

# Permissions are re-read at most this often (and at once when a grant changes).
VISIBILITY_TTL_SECONDS = 30


class EventsConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user = user
        self.hosts_filter = self._parse_hosts(self.scope.get("query_string", b"").decode(errors="replace"))
        self.visibility = await self._load_visibility()
        self.visibility_at = time.monotonic()
        await self.channel_layer.group_add(realtime.BROADCAST_GROUP, self.channel_name)
        await self.accept()
        await self.send(text_data=json.dumps({"type": "hello", "data": {"user": user.username}, "ts": realtime.utc_iso()}))

    @staticmethod
    def _parse_hosts(query: str) -> set[str] | None:
        from urllib.parse import parse_qs

        values = parse_qs(query).get("host", [])
        hosts = {h for value in values for h in value.split(",") if h}
        return hosts or None

    @database_sync_to_async
    def _load_visibility(self) -> Visibility:
        from django.contrib.auth import get_user_model

        # Re-read the user too: deactivation or a role change applies to open sockets.
        user = get_user_model().objects.filter(pk=self.user.pk).first()
        return Visibility.for_user(user)

    async def disconnect(self, code):
        if hasattr(self, "user"):
            await self.channel_layer.group_discard(realtime.BROADCAST_GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = json.loads(text_data or "")
        except ValueError:
            await self._error("Messages must be JSON objects.")
            return
        if not isinstance(message, dict):
            await self._error("Messages must be JSON objects.")
            return
        action = message.get("action")
        if action == "subscribe":
            hosts = message.get("hosts")
            if hosts is None or hosts == []:
                self.hosts_filter = None
            elif isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
                self.hosts_filter = set(hosts)
            else:
                await self._error("subscribe takes {\"hosts\": [host ids]} (empty for all).")
                return
            await self.send(text_data=json.dumps({"type": "subscribed", "data": {"hosts": sorted(self.hosts_filter or [])}, "ts": realtime.utc_iso()}))
        elif action == "ping":
            await self.send(text_data=json.dumps({"type": "pong", "data": {}, "ts": realtime.utc_iso()}))
        else:
            await self._error(f"Unknown action {action!r}.")

    async def _error(self, text: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "data": {"message": text}, "ts": realtime.utc_iso()}))

    async def dockmon_event(self, event):
        if event.get("event_type") == "permissions.changed":
            self.visibility_at = 0
            return
        if time.monotonic() - self.visibility_at > VISIBILITY_TTL_SECONDS:
            self.visibility = await self._load_visibility()
            self.visibility_at = time.monotonic()
        host, key = event.get("host", ""), event.get("key", "")
        if not self.visibility.allows(host, key):
            return
        if self.hosts_filter is not None and host not in self.hosts_filter:
            return
        await self.send(text_data=event["text"])
