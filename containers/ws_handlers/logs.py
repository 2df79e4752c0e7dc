"""Log follows: logs.follow / logs.unfollow → "container.log" messages.

Following a container's logs is guarded by `operate` on it (or its host). Follows have
backpressure: the bytes read from the engine and not yet taken by the client are bounded per
socket (the socket's ByteBudget, DOCKMON_WS_SEND_BUFFER_BYTES, shared by its log pumps). Lines
wait while the client's connection is not taking data (SendFlow, paused); when the buffer stays
full for SLOW_CLIENT_SECONDS the follows of that socket end with an `error` (reason
"slow_client") and their engine streams are closed: memory stays flat whatever the container
writes.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from containers import engine
from containers.engine import logs as engine_logs
from containers.streams import SlowClient, StreamPump
from dockmon_site import realtime

logger = logging.getLogger(__name__)

MAX_FOLLOWS = 10
SLOW_CLIENT_SECONDS = 2.0  # how long the per-socket log buffer may stay full before follows are dropped


class LogFollows:
    def __init__(self, socket):
        self.socket = socket
        self.follows: dict[str, list[StreamPump]] = {}
        self.buffers: dict[tuple[str, str], bytes] = {}
        self.outbox: collections.deque[tuple[str, str, int]] = collections.deque()
        self.outbox_ready = asyncio.Event()

    def keys(self) -> list[str]:
        return list(self.follows)

    # --- actions ----------------------------------------------------------------------------
    async def follow(self, message) -> None:
        socket = self.socket
        key = message.get("key")
        tail = message.get("tail", 0)
        if not isinstance(tail, int) or not 0 <= tail <= 10_000:
            await socket.error("tail must be a whole number from 0 to 10000.", key=key)
            return
        container = await socket.container_for(key, "operate")
        if container is None:
            await socket.error("No such container.", key=key)
            return
        if key in self.follows:
            await socket.reply("logs.following", {"key": key})
            return
        if len(self.follows) >= MAX_FOLLOWS:
            await socket.error(f"At most {MAX_FOLLOWS} log follows per connection.", key=key)
            return
        host, container_id = container.host, container.container_id
        try:
            probe = await asyncio.to_thread(engine.client_for_host, host)
            try:
                tty = await asyncio.to_thread(engine_logs.container_is_tty, probe, container_id)
            finally:
                probe.close()
        except engine.EngineError as exc:
            await socket.error(f"Cannot follow logs: {exc}", key=key)
            return
        if key in self.follows or socket.closing:
            return
        pumps = []
        for stream_name in ("stdout",) if tty else ("stdout", "stderr"):
            def open_stream(stream_name=stream_name):
                client = engine.client_for_host(host, timeout=engine.NO_TIMEOUT)
                return engine_logs.follow_logs(client, container_id, stream_name, tail=tail), client

            pumps.append(
                StreamPump(
                    f"logs {key} {stream_name}",
                    open_stream,
                    on_item=lambda chunk, credit, s=stream_name: self._on_chunk(key, s, chunk, credit),
                    on_end=lambda error, s=stream_name: self._on_end(key, s, error),
                    budget=socket.budget,
                    budget_wait=SLOW_CLIENT_SECONDS,
                ).start()
            )
        self.follows[key] = pumps
        await socket.reply("logs.following", {"key": key})

    async def unfollow_action(self, message) -> None:
        key = message.get("key")
        if key not in self.follows:
            await self.socket.error("Not following that container.", key=key)
            return
        await self.unfollow(key)
        await self.socket.reply("logs.unfollowed", {"key": key})

    # --- lines from the engine to the client ------------------------------------------------
    def _on_chunk(self, key: str, stream: str, chunk: bytes, credit: int) -> None:
        budget = self.socket.budget
        if key not in self.follows or self.socket.closing:
            budget.release(credit)
            return
        buffer = self.buffers.get((key, stream), b"") + chunk
        *lines, rest = buffer.split(b"\n")
        if len(rest) > engine_logs.MAX_LINE_BYTES * 4:
            lines.append(rest)  # a runaway line without a newline: show what we have
            rest = b""
        self.buffers[(key, stream)] = rest
        if not lines:
            budget.release(credit)
            return
        for index, raw in enumerate(lines):
            line = engine_logs.decode_line(raw, stream)
            text = realtime.encode("container.log", {
                "key": key, "ts": realtime.utc_iso(line.ts) if line.ts else None, "stream": line.stream, "text": line.text,
            })
            # The chunk's share of the budget goes with its last line: released once that is sent.
            self.outbox.append((key, text, credit if index == len(lines) - 1 else 0))
        self.outbox_ready.set()

    async def run_sender(self) -> None:
        """Hands queued log lines to the server, never faster than the client takes them."""
        socket = self.socket
        while True:
            await self.outbox_ready.wait()
            self.outbox_ready.clear()
            while self.outbox:
                flow = socket.flow
                if flow is not None and flow.paused:
                    await flow.wait_resumed()
                    if flow.stopped:
                        return
                    continue  # the outbox may have been purged meanwhile (a dropped follow)
                key, text, credit = self.outbox.popleft()
                try:
                    if key in self.follows and not socket.closing:
                        await socket.send_text(text)
                finally:
                    socket.budget.release(credit)

    def _purge_outbox(self, key: str) -> None:
        kept = collections.deque()
        for item in self.outbox:
            if item[0] == key:
                self.socket.budget.release(item[2])
            else:
                kept.append(item)
        self.outbox = kept

    def _on_end(self, key: str, stream: str, error) -> None:
        if key not in self.follows:
            return
        if isinstance(error, SlowClient):
            message = (f"Log follow stopped: this client is not reading fast enough "
                       f"({self.socket.budget.limit} bytes were waiting for it for {SLOW_CLIENT_SECONDS:g} s).")
            self.socket.spawn(self.drop(key, message, "slow_client"))
        elif error is not None:
            self.socket.spawn(self.drop(key, f"Log stream ended: {engine.describe_error(error)}", "engine"))

    # --- ending follows ---------------------------------------------------------------------
    async def drop(self, key: str, message: str, reason: str) -> None:
        """End a follow the server stopped, telling the client why."""
        if key not in self.follows:
            return
        if reason == "slow_client":
            logger.warning("log follow of %s stopped for %s: the client is not reading", key, self.socket.user)
        await self.unfollow(key)
        await self.socket.error(message, key=key, reason=reason)

    async def unfollow(self, key: str) -> None:
        pumps = self.follows.pop(key, [])
        self._purge_outbox(key)
        for pump in pumps:
            pump.close()
        for pump in pumps:
            await pump.join()
        for stream in ("stdout", "stderr"):
            self.buffers.pop((key, stream), None)

    async def stop_all(self) -> None:
        for key in list(self.follows):
            await self.unfollow(key)

    async def recheck(self, followed: list[str], followable) -> None:
        """Follows of containers the user may no longer operate end, with a word."""
        for key in followed:
            if key in self.follows and key not in followable:
                await self.drop(key, "Log follow stopped: you no longer have access to this container.", "permission")
