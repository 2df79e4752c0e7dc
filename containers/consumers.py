"""WebSocket /ws/events/: live events, each checked against the user's permissions.

Besides the broadcast stream a client may ask for:
- {"action": "subscribe", "hosts": [ids]}           only events of these hosts ([] = all)
- {"action": "logs.follow", "key": k, "tail": n}     → "container.log" messages; "logs.unfollow" stops
- {"action": "stats.subscribe", "hosts"|"keys": [...]} → "stats.sample" batches; "stats.unsubscribe"
- {"action": "profile.start", "key": k}              → "profile.sample" every second, saved every 10 s;
  {"action": "profile.stop", "session": id}; a disconnect closes and keeps the session
  (containers/ws_profiles.py).

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

Log follows have backpressure: the bytes read from the engine and not yet taken by the client
are bounded per socket (DOCKMON_WS_SEND_BUFFER_BYTES, a ByteBudget shared by the socket's log
pumps). Lines wait while the client's connection is not taking data (SendFlow, paused); when
the buffer stays full for SLOW_CLIENT_SECONDS the follows of that socket end with an `error`
(reason "slow_client") and their engine streams are closed: memory stays flat whatever the
container writes.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from containers import engine
from containers.permissions import has_container_perm
from containers.streams import ByteBudget, SlowClient, StreamPump
from containers.ws_access import DENIED, load_access, session_digest
from containers.ws_profiles import MAX_PROFILES, ProfilesMixin
from dockmon_site import realtime

logger = logging.getLogger(__name__)

MAX_FOLLOWS = 10
SLOW_CLIENT_SECONDS = 2.0  # how long the per-socket log buffer may stay full before follows are dropped
PERMISSIONS_CHANGED = "permissions.changed"
CLOSE_UNAUTHENTICATED = 4401
CLOSE_ACCESS_ENDED = 4403
CLOSE_TOO_SLOW = 4008

__all__ = ["EventsConsumer", "MAX_FOLLOWS", "MAX_PROFILES"]


def _now_iso() -> str:
    return realtime.utc_iso()


class EventsConsumer(ProfilesMixin, AsyncWebsocketConsumer):
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
        self.hosts_filter = self._parse_hosts(self.scope.get("query_string", b"").decode(errors="replace"))
        access = await database_sync_to_async(load_access)(user.pk, token_id=self.token_id, session_key=self.session_key)
        if access.denied:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user, self.visibility = access.user, access.visibility
        self.follows: dict[str, list[StreamPump]] = {}
        self.log_buffers: dict[tuple[str, str], bytes] = {}
        self.stats_hosts: set[str] = set()
        self.stats_keys: set[str] | None = None
        self.profiles: dict[int, dict] = {}
        self.tasks: set[asyncio.Task] = set()
        self.recheck_lock = asyncio.Lock()
        self.flow = self.scope.get("dockmon.flow")
        self.budget = ByteBudget(settings.DOCKMON_WS_SEND_BUFFER_BYTES)
        self.outbox: collections.deque[tuple[str, str, int]] = collections.deque()
        self.outbox_ready = asyncio.Event()
        await self.channel_layer.group_add(realtime.BROADCAST_GROUP, self.channel_name)
        await self.accept()
        self.background = [asyncio.ensure_future(self._recheck_loop()), asyncio.ensure_future(self._log_sender())]
        await self._reply("hello", {"user": user.username, "read_only": self.read_only})

    @staticmethod
    def _parse_hosts(query: str) -> set[str] | None:
        from urllib.parse import parse_qs

        values = parse_qs(query).get("host", [])
        hosts = {h for value in values for h in value.split(",") if h}
        return hosts or None

    def _spawn(self, coro) -> None:
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
        for host_id in list(self.stats_hosts):
            try:
                await self.channel_layer.group_discard(realtime.stats_group(host_id), self.channel_name)
            except Exception as exc:
                logger.info("group_discard failed: %r", exc)
        self.stats_hosts, self.stats_keys = set(), None
        for key in list(self.follows):
            await self._unfollow(key)
        for session_id in list(self.profiles):
            await self._stop_profile(session_id, profile_reason)

    # --- sending ----------------------------------------------------------------------------
    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)
        flow = self.flow
        if flow is not None:
            flow.sent(len(text))
            if flow.backlog > 4 * self.budget.limit and not self.closing:
                # Not even the small messages are being read: stop feeding a dead reader.
                logger.warning("closing a WebSocket of %s: %d bytes are waiting for the client", self.user, flow.backlog)
                self.closing = True
                self._spawn(self._close_for(CLOSE_TOO_SLOW, "client too slow"))

    async def _close_for(self, code: int, profile_reason: str) -> None:
        await self._stop_streams(profile_reason)
        await self.close(code=code)

    async def _reply(self, type_: str, data: dict) -> None:
        await self._send_text(json.dumps({"type": type_, "data": data, "ts": _now_iso()}, default=str))

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
        if self.closing:
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
            followed = list(self.follows)
            access = await database_sync_to_async(load_access)(
                self.user.pk, token_id=self.token_id, session_key=self.session_key, follow_keys=followed
            )
            if access.denied:
                await self._end(access.denied)
                return False
            self.user, self.visibility = access.user, access.visibility
            for key in followed:
                if key in self.follows and key not in access.followable:
                    await self._drop_follow(key, "Log follow stopped: you no longer have access to this container.", "permission")
            await self._recheck_profiles()
            await self._recheck_stats()
            return True

    async def _end(self, reason: str) -> None:
        """The user, token or session behind this socket is no longer valid: say why and close."""
        if self.closing:
            return
        self.closing = True
        await self._error(DENIED[reason], reason=reason)
        await self._close_for(CLOSE_ACCESS_ENDED, "access revoked")

    # --- broadcast and group messages -------------------------------------------------------
    async def dockmon_resync(self, event):
        """This web process's Redis connection came back after a failure: events may have been
        missed meanwhile, so the client should reload what it shows (dockmon_site/channel_layer.py)."""
        if not hasattr(self, "background") or self.closing:
            return  # not open (refused at the handshake) or closing
        await self._reply("stream.resync", {"reason": "The live stream was interrupted; reload the current state."})

    async def dockmon_event(self, event):
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
        visibility = self.visibility
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
            await self._send_text(event["text"])
            return
        if not visibility.allows(host, key):
            return
        if self.hosts_filter is not None and host not in self.hosts_filter:
            return
        await self._send_text(event["text"])

    async def _send_stats(self, payload: dict, visibility) -> None:
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
        await self._send_text(json.dumps({"type": payload["type"], "data": out, "ts": payload["ts"]}))

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

    # --- logs.follow ------------------------------------------------------------------------
    async def _follow(self, message):
        key = message.get("key")
        tail = message.get("tail", 0)
        if not isinstance(tail, int) or not 0 <= tail <= 10_000:
            await self._error("tail must be a whole number from 0 to 10000.", key=key)
            return
        # Following a container's logs is guarded by `operate` on it (or its host).
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
        if key in self.follows or self.closing:
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
                    on_item=lambda chunk, credit, s=stream_name: self._on_log_chunk(key, s, chunk, credit),
                    on_end=lambda error, s=stream_name: self._on_log_end(key, s, error),
                    budget=self.budget,
                    budget_wait=SLOW_CLIENT_SECONDS,
                ).start()
            )
        self.follows[key] = pumps
        await self._reply("logs.following", {"key": key})

    def _on_log_chunk(self, key: str, stream: str, chunk: bytes, credit: int) -> None:
        if key not in self.follows or self.closing:
            self.budget.release(credit)
            return
        buffer = self.log_buffers.get((key, stream), b"") + chunk
        *lines, rest = buffer.split(b"\n")
        if len(rest) > engine.MAX_LINE_BYTES * 4:
            lines.append(rest)  # a runaway line without a newline: show what we have
            rest = b""
        self.log_buffers[(key, stream)] = rest
        if not lines:
            self.budget.release(credit)
            return
        for index, raw in enumerate(lines):
            line = engine.decode_line(raw, stream)
            text = json.dumps({"type": "container.log", "data": {
                "key": key, "ts": realtime.utc_iso(line.ts) if line.ts else None, "stream": line.stream, "text": line.text,
            }, "ts": _now_iso()})
            # The chunk's share of the budget goes with its last line: released once that is sent.
            self.outbox.append((key, text, credit if index == len(lines) - 1 else 0))
        self.outbox_ready.set()

    async def _log_sender(self) -> None:
        """Hands queued log lines to the server, never faster than the client takes them."""
        while True:
            await self.outbox_ready.wait()
            self.outbox_ready.clear()
            while self.outbox:
                flow = self.flow
                if flow is not None and flow.paused:
                    await flow.wait_resumed()
                    if flow.stopped:
                        return
                    continue  # the outbox may have been purged meanwhile (a dropped follow)
                key, text, credit = self.outbox.popleft()
                try:
                    if key in self.follows and not self.closing:
                        await self._send_text(text)
                finally:
                    self.budget.release(credit)

    def _purge_outbox(self, key: str) -> None:
        kept = collections.deque()
        for item in self.outbox:
            if item[0] == key:
                self.budget.release(item[2])
            else:
                kept.append(item)
        self.outbox = kept

    def _on_log_end(self, key: str, stream: str, error) -> None:
        pumps = self.follows.get(key)
        if pumps is None:
            return
        if isinstance(error, SlowClient):
            message = (f"Log follow stopped: this client is not reading fast enough "
                       f"({self.budget.limit} bytes were waiting for it for {SLOW_CLIENT_SECONDS:g} s).")
            self._spawn(self._drop_follow(key, message, "slow_client"))
        elif error is not None:
            self._spawn(self._drop_follow(key, f"Log stream ended: {engine.describe_error(error)}", "engine"))

    async def _drop_follow(self, key: str, message: str, reason: str) -> None:
        if key not in self.follows:
            return
        if reason == "slow_client":
            logger.warning("log follow of %s stopped for %s: the client is not reading", key, self.user)
        await self._unfollow(key)
        await self._error(message, key=key, reason=reason)

    async def _unfollow_action(self, message):
        key = message.get("key")
        if key not in self.follows:
            await self._error("Not following that container.", key=key)
            return
        await self._unfollow(key)
        await self._reply("logs.unfollowed", {"key": key})

    async def _unfollow(self, key: str) -> None:
        pumps = self.follows.pop(key, [])
        self._purge_outbox(key)
        for pump in pumps:
            pump.close()
        for pump in pumps:
            await pump.join()
        for stream in ("stdout", "stderr"):
            self.log_buffers.pop((key, stream), None)

    # --- stats ------------------------------------------------------------------------------
    async def _stats_subscribe(self, message):
        from containers.models import Container, DockerHost

        hosts, keys = message.get("hosts"), message.get("keys")
        visibility = self.visibility
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

    async def _recheck_stats(self) -> None:
        """Stats subscriptions the fresh visibility no longer covers are dropped, with a word."""
        visibility = self.visibility
        lost_keys = sorted(k for k in (self.stats_keys or ()) if not visibility.allows(k.split(":", 1)[0], k))
        if lost_keys:
            self.stats_keys = set(self.stats_keys) - set(lost_keys)
        keep_hosts = set()
        for host_id in self.stats_hosts:
            if visibility.everything or host_id in visibility.host_ids:
                keep_hosts.add(host_id)
            elif self.stats_keys and any(k.startswith(f"{host_id}:") for k in self.stats_keys):
                keep_hosts.add(host_id)
        lost_hosts = sorted(self.stats_hosts - keep_hosts)
        for host_id in lost_hosts:
            await self.channel_layer.group_discard(realtime.stats_group(host_id), self.channel_name)
        self.stats_hosts = keep_hosts
        if lost_keys or lost_hosts:
            await self._error("Stats stopped for what you no longer have access to.", reason="permission", hosts=lost_hosts, keys=lost_keys)
