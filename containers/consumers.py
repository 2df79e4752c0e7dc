"""WebSocket /ws/events/: live events, each checked against the user's permissions.

Besides the broadcast stream a client may ask for:
- {"action": "subscribe", "hosts": [ids]}           only events of these hosts ([] = all)
- {"action": "logs.follow", "key": k, "tail": n}     → "container.log" messages; "logs.unfollow" stops
- {"action": "stats.subscribe", "hosts"|"keys": [...]} → "stats.sample" batches; "stats.unsubscribe"
- {"action": "profile.start", "key": k}              → "profile.sample" every second, saved every 10 s;
  {"action": "profile.stop", "session": id}; a disconnect closes and keeps the session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from containers import engine
from containers.streams import StreamPump
from dockmon_site import realtime
from dockmon_site.permissions import Visibility, has_container_perm

logger = logging.getLogger(__name__)

# Permissions are re-read at most this often (and at once when a grant changes).
VISIBILITY_TTL_SECONDS = 30
MAX_FOLLOWS = 10
MAX_PROFILES = 3


def _now_iso() -> str:
    return realtime.utc_iso()


class EventsConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user = user
        self.hosts_filter = self._parse_hosts(self.scope.get("query_string", b"").decode(errors="replace"))
        self.visibility = await self._load_visibility()
        if self.visibility is None:
            await self.close(code=4401)
            return
        self.visibility_at = time.monotonic()
        self.follows: dict[str, list[StreamPump]] = {}
        self.log_buffers: dict[tuple[str, str], bytes] = {}
        self.stats_hosts: set[str] = set()
        self.stats_keys: set[str] | None = None
        self.profiles: dict[int, dict] = {}
        await self.channel_layer.group_add(realtime.BROADCAST_GROUP, self.channel_name)
        await self.accept()
        await self._reply("hello", {"user": user.username})

    @staticmethod
    def _parse_hosts(query: str) -> set[str] | None:
        from urllib.parse import parse_qs

        values = parse_qs(query).get("host", [])
        hosts = {h for value in values for h in value.split(",") if h}
        return hosts or None

    @database_sync_to_async
    def _load_visibility(self) -> Visibility | None:
        from django.contrib.auth import get_user_model

        from accounts.models import APIToken

        # Re-read the user too: deactivation or a role change applies to open sockets; so does
        # revoking (or the expiry of) the token the socket was opened with. None = must close.
        token_id = self.scope.get("token_id")
        if token_id is not None and not APIToken.objects.usable().filter(pk=token_id).exists():
            return None
        user = get_user_model().objects.filter(pk=self.user.pk, is_active=True).first()
        if user is None:
            return None
        return Visibility.for_user(user)

    async def disconnect(self, code):
        if not hasattr(self, "user"):
            return
        await self.channel_layer.group_discard(realtime.BROADCAST_GROUP, self.channel_name)
        for host_id in list(getattr(self, "stats_hosts", ())):
            await self.channel_layer.group_discard(realtime.stats_group(host_id), self.channel_name)
        for key in list(getattr(self, "follows", {})):
            await self._unfollow(key)
        for session_id in list(getattr(self, "profiles", {})):
            await self._stop_profile(session_id, "disconnected")

    async def _reply(self, type_: str, data: dict) -> None:
        await self.send(text_data=json.dumps({"type": type_, "data": data, "ts": _now_iso()}, default=str))

    async def _error(self, text: str, **extra) -> None:
        await self._reply("error", {"message": text, **extra})

    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = json.loads(text_data or "")
        except ValueError:
            message = None
        if not isinstance(message, dict):
            await self._error("Messages must be JSON objects.")
            return
        action = message.get("action")
        handler = {
            "subscribe": self._subscribe,
            "ping": self._ping,
            "logs.follow": self._follow,
            "logs.unfollow": self._unfollow_action,
            "stats.subscribe": self._stats_subscribe,
            "stats.unsubscribe": self._stats_unsubscribe,
            "profile.start": self._start_profile,
            "profile.stop": self._stop_profile_action,
        }.get(action)
        if handler is None:
            await self._error(f"Unknown action {action!r}.")
            return
        await handler(message)

    async def _ping(self, message):
        await self._reply("pong", {})

    async def _subscribe(self, message):
        hosts = message.get("hosts")
        if hosts is None or hosts == []:
            self.hosts_filter = None
        elif isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
            self.hosts_filter = set(hosts)
        else:
            await self._error('subscribe takes {"hosts": [host ids]} (empty for all).')
            return
        await self._reply("subscribed", {"hosts": sorted(self.hosts_filter or [])})

    # --- broadcast and group messages -----------------------------------------------------
    async def _fresh_visibility(self) -> Visibility:
        if time.monotonic() - self.visibility_at > VISIBILITY_TTL_SECONDS:
            visibility = await self._load_visibility()
            if visibility is None:
                self.revoked = True
                await self.close(code=4403)
                return Visibility()  # sees nothing while the close goes out
            self.visibility = visibility
            self.visibility_at = time.monotonic()
        return self.visibility

    async def dockmon_resync(self, event):
        """This web process's Redis connection came back after a failure: events may have been
        missed meanwhile, so the client should reload what it shows (dockmon_site/channel_layer.py)."""
        await self._reply("stream.resync", {"reason": "The live stream was interrupted; reload the current state."})

    async def dockmon_event(self, event):
        if event.get("event_type") == "permissions.changed":
            self.visibility_at = 0
            await self._fresh_visibility()  # re-read now: a revoked token closes the socket at once
            return
        visibility = await self._fresh_visibility()
        host, key = event.get("host", ""), event.get("key", "")
        payload = event.get("payload")
        if payload is not None:
            await self._send_stats(payload, visibility)
            return
        target = event.get("user")
        if target is not None:
            # A message for one person (the progress of their bulk job): theirs only, and when it
            # names a container, only while they may still see that container.
            if target != self.user.pk or ((host or key) and not visibility.allows(host, key)):
                return
            await self.send(text_data=event["text"])
            return
        if not visibility.allows(host, key):
            return
        if self.hosts_filter is not None and host not in self.hosts_filter:
            return
        await self.send(text_data=event["text"])

    async def _send_stats(self, payload: dict, visibility: Visibility) -> None:
        data = payload.get("data") or {}
        host = data.get("host", "")
        whole_host = visibility.everything or host in visibility.host_ids
        samples = [
            s for s in data.get("samples", [])
            if (whole_host or s["key"] in visibility.container_keys) and (self.stats_keys is None or s["key"] in self.stats_keys)
        ]
        if not samples and not whole_host:
            return
        out = dict(data, samples=samples)
        if not whole_host:
            out.pop("host_totals", None)  # a sum over containers this user may not see
        await self.send(text_data=json.dumps({"type": payload["type"], "data": out, "ts": payload["ts"]}))

    # --- container lookups ------------------------------------------------------------------
    @database_sync_to_async
    def _container_for(self, key, action: str):
        from containers.models import Container

        if not isinstance(key, str):
            return None
        container = Container.objects.select_related("host").filter(pk=key, removed_at__isnull=True).first()
        if container is None or not has_container_perm(self.user, "view", container):
            return None
        if action != "view" and not has_container_perm(self.user, action, container):
            return None
        return container

    # --- logs.follow ----------------------------------------------------------------------
    async def _follow(self, message):
        key = message.get("key")
        tail = message.get("tail", 0)
        if not isinstance(tail, int) or not 0 <= tail <= 10_000:
            await self._error("tail must be a whole number from 0 to 10000.", key=key)
            return
        container = await self._container_for(key, "operate")
        if container is None:
            await self._error("No such container.", key=key)
            return
        if key in self.follows:
            await self._reply("logs.following", {"key": key})
            return
        if len(self.follows) >= MAX_FOLLOWS:
            await self._error(f"At most {MAX_FOLLOWS} log follows per connection.", key=key)
            return
        host, container_id = container.host, container.container_id
        try:
            probe = await asyncio.to_thread(engine.client_for_host, host)
            try:
                tty = await asyncio.to_thread(engine.container_is_tty, probe, container_id)
            finally:
                probe.close()
        except engine.EngineError as exc:
            await self._error(f"Cannot follow logs: {exc}", key=key)
            return
        pumps = []
        for stream_name in ("stdout",) if tty else ("stdout", "stderr"):
            def open_stream(stream_name=stream_name):
                client = engine.client_for_host(host, timeout=engine.NO_TIMEOUT)
                return engine.follow_logs(client, container_id, stream_name, tail=tail), client

            pumps.append(
                StreamPump(
                    f"logs {key} {stream_name}",
                    open_stream,
                    on_item=lambda chunk, s=stream_name: self._on_log_chunk(key, s, chunk),
                    on_end=lambda error, s=stream_name: self._on_log_end(key, s, error),
                ).start()
            )
        self.follows[key] = pumps
        await self._reply("logs.following", {"key": key})

    def _on_log_chunk(self, key: str, stream: str, chunk: bytes) -> None:
        buffer = self.log_buffers.get((key, stream), b"") + chunk
        *lines, rest = buffer.split(b"\n")
        if len(rest) > engine.MAX_LINE_BYTES * 4:
            lines.append(rest)  # a runaway line without a newline: show what we have
            rest = b""
        self.log_buffers[(key, stream)] = rest
        for raw in lines:
            line = engine.decode_line(raw, stream)
            asyncio.ensure_future(self._reply("container.log", {
                "key": key, "ts": realtime.utc_iso(line.ts) if line.ts else None, "stream": line.stream, "text": line.text,
            }))

    def _on_log_end(self, key: str, stream: str, error) -> None:
        if error is not None:
            asyncio.ensure_future(self._error(f"Log stream ended: {engine.describe_error(error)}", key=key))

    async def _unfollow_action(self, message):
        key = message.get("key")
        if key not in self.follows:
            await self._error("Not following that container.", key=key)
            return
        await self._unfollow(key)
        await self._reply("logs.unfollowed", {"key": key})

    async def _unfollow(self, key: str) -> None:
        pumps = self.follows.pop(key, [])
        for pump in pumps:
            pump.close()
        for pump in pumps:
            await pump.join()
        for stream in ("stdout", "stderr"):
            self.log_buffers.pop((key, stream), None)

    # --- stats ----------------------------------------------------------------------------
    async def _stats_subscribe(self, message):
        from containers.models import Container, DockerHost

        hosts, keys = message.get("hosts"), message.get("keys")
        visibility = await self._fresh_visibility()
        if keys is not None:
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                await self._error('stats.subscribe takes {"keys": [container keys]} or {"hosts": [host ids]}.')
                return
            visible = await database_sync_to_async(
                lambda: {c.key: str(c.host_id) for c in Container.objects.filter(pk__in=keys) if visibility.allows(str(c.host_id), c.key)}
            )()
            wanted_hosts = set(visible.values())
            self.stats_keys = (self.stats_keys or set()) | set(visible)
        elif isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
            known = await database_sync_to_async(lambda: {str(pk) for pk in DockerHost.objects.filter(pk__in=[h for h in hosts if len(h) == 36]).values_list("pk", flat=True)})()
            wanted_hosts = {h for h in known if visibility.everything or h in visibility.host_ids}
            self.stats_keys = None
        else:
            await self._error('stats.subscribe takes {"keys": [container keys]} or {"hosts": [host ids]}.')
            return
        for host_id in wanted_hosts - self.stats_hosts:
            await self.channel_layer.group_add(realtime.stats_group(host_id), self.channel_name)
        self.stats_hosts |= wanted_hosts
        await self._reply("stats.subscribed", {"hosts": sorted(self.stats_hosts), "keys": sorted(self.stats_keys) if self.stats_keys else None})

    async def _stats_unsubscribe(self, message):
        for host_id in self.stats_hosts:
            await self.channel_layer.group_discard(realtime.stats_group(host_id), self.channel_name)
        self.stats_hosts, self.stats_keys = set(), None
        await self._reply("stats.unsubscribed", {})

    # --- profiler -------------------------------------------------------------------------
    @database_sync_to_async
    def _open_session(self, container):
        from containers.models import ProfileSession

        return ProfileSession.objects.create(
            container_key=container.key, container_name=container.name, host_id=container.host_id, user=self.user
        )

    @database_sync_to_async
    def _save_session(self, session_id: int, samples: list, *, end_reason: str = "") -> None:
        from containers.models import ProfileSession

        session = ProfileSession.objects.filter(pk=session_id).first()
        if session is None:
            return
        session.samples = [*session.samples, *samples]
        session.sample_count = len(session.samples)
        fields = ["samples", "sample_count"]
        if end_reason:
            session.ended_at = timezone.now()
            session.end_reason = end_reason
            fields += ["ended_at", "end_reason"]
        session.save(update_fields=fields)

    async def _start_profile(self, message):
        key = message.get("key")
        container = await self._container_for(key, "view")
        if container is None:
            await self._error("No such container.", key=key)
            return
        if len(self.profiles) >= MAX_PROFILES:
            await self._error(f"At most {MAX_PROFILES} profiles per connection.", key=key)
            return
        session = await self._open_session(container)
        host, container_id = container.host, container.container_id
        state = {"key": key, "pending": [], "pump": None, "saver": None}

        def open_stream():
            client = engine.client_for_host(host, timeout=engine.NO_TIMEOUT)
            return engine.stats_stream(client, container_id), client

        def on_item(doc):
            sample = engine.compute_stats(container_id, doc)
            row = [realtime.utc_iso(sample.ts), sample.cpu_percent, sample.mem_bytes, sample.mem_limit,
                   sample.net_rx, sample.net_tx, sample.blk_read, sample.blk_write, sample.pids]
            state["pending"].append(row)
            asyncio.ensure_future(self._reply("profile.sample", {
                "session": session.pk, "key": key, "t": row[0], "cpu_percent": sample.cpu_percent, "mem_bytes": sample.mem_bytes,
                "mem_limit": sample.mem_limit, "net_rx": sample.net_rx, "net_tx": sample.net_tx, "blk_read": sample.blk_read,
                "blk_write": sample.blk_write, "pids": sample.pids,
            }))

        def on_end(error):
            if session.pk in self.profiles:
                asyncio.ensure_future(self._stop_profile(session.pk, "container stopped" if error is None else "engine error"))

        state["pump"] = StreamPump(f"profile {key}", open_stream, on_item, on_end).start()
        state["saver"] = asyncio.ensure_future(self._periodic_save(session.pk))
        self.profiles[session.pk] = state
        await self._reply("profile.started", {"session": session.pk, "key": key})

    async def _periodic_save(self, session_id: int) -> None:
        interval = settings.DOCKMON_PROFILE_SAVE_SECONDS
        while True:
            await asyncio.sleep(interval)
            state = self.profiles.get(session_id)
            if state is None:
                return
            pending, state["pending"] = state["pending"], []
            if pending:
                await self._save_session(session_id, pending)

    async def _stop_profile_action(self, message):
        session_id = message.get("session")
        if session_id not in self.profiles:
            await self._error("No such running profile on this connection.", session=session_id)
            return
        await self._stop_profile(session_id, "stopped")

    async def _stop_profile(self, session_id: int, reason: str) -> None:
        state = self.profiles.pop(session_id, None)
        if state is None:
            return
        state["saver"].cancel()
        state["pump"].close()
        # Save before waiting for the reader thread: a disconnecting client's session is kept
        # even if the server gives the consumer little time to finish.
        await self._save_session(session_id, state["pending"], end_reason=reason)
        await state["pump"].join()
        try:
            await self._reply("profile.stopped", {"session": session_id, "key": state["key"], "reason": reason})
        except Exception:
            pass  # the socket is gone (disconnect): the session is saved all the same

