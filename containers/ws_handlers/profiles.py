"""The live profiler: profile.start / profile.stop.

A profile writes a ProfileSession row and saves its samples as it goes
(containers/profile_sessions.py), so it is a write: refused to a read-only token. Limits:
MAX_PROFILES per connection; DOCKMON_PROFILE_MAX_PER_USER open sessions per user across every
socket and web process (counted in the database: rows without ended_at, started within the
maximum duration, so a row left open by a killed process stops counting once it is that old);
and DOCKMON_PROFILE_MAX_SECONDS, after which a profile stops by itself with reason "max duration".
"""

from __future__ import annotations

import asyncio
import time

from channels.db import database_sync_to_async
from django.conf import settings

from containers import engine
from containers.engine import stats as engine_stats
from containers.profile_sessions import ProfileLimitReached, open_session, save_samples
from containers.streams import StreamPump
from dockmon_site import realtime

MAX_PROFILES = 3

_open_session = database_sync_to_async(open_session)
_save_samples = database_sync_to_async(save_samples)


class Profiles:
    def __init__(self, socket):
        self.socket = socket
        self.running: dict[int, dict] = {}

    async def start(self, message) -> None:
        socket = self.socket
        key = message.get("key")
        if socket.read_only:
            # A profile writes a ProfileSession row: a read-only token may only read.
            await socket.error("This token is read-only: it cannot start a profile.", key=key, reason="read_only")
            return
        container = await socket.container_for(key, "view")  # guarded by `view` on the container (or its host)
        if container is None:
            await socket.error("No such container.", key=key)
            return
        if len(self.running) >= MAX_PROFILES:
            await socket.error(f"At most {MAX_PROFILES} profiles per connection.", key=key, reason="limit")
            return
        try:
            session = await _open_session(socket.user, container)
        except ProfileLimitReached as exc:
            await socket.error(f"At most {exc.args[0]} profiles may run at once per user; stop one first.", key=key, reason="limit")
            return
        host, container_id = container.host, container.container_id
        state = {"key": key, "host": str(container.host_id), "pending": [], "pump": None, "saver": None, "started": time.monotonic()}

        def open_stream():
            client = engine.client_for_host(host, timeout=engine.NO_TIMEOUT)
            return engine_stats.stats_stream(client, container_id), client

        def on_item(doc):
            if session.pk not in self.running:
                return
            sample = engine_stats.compute_stats(container_id, doc)
            row = [realtime.utc_iso(sample.ts), sample.cpu_percent, sample.mem_bytes, sample.mem_limit,
                   sample.net_rx, sample.net_tx, sample.blk_read, sample.blk_write, sample.pids]
            state["pending"].append(row)
            socket.spawn(socket.reply("profile.sample", {
                "session": session.pk, "key": key, "t": row[0], "cpu_percent": sample.cpu_percent, "mem_bytes": sample.mem_bytes,
                "mem_limit": sample.mem_limit, "net_rx": sample.net_rx, "net_tx": sample.net_tx, "blk_read": sample.blk_read,
                "blk_write": sample.blk_write, "pids": sample.pids,
            }))

        def on_end(error):
            if session.pk in self.running:
                socket.spawn(self.stop(session.pk, "container stopped" if error is None else "engine error"))

        state["pump"] = StreamPump(f"profile {key}", open_stream, on_item, on_end).start()
        state["saver"] = asyncio.ensure_future(self._periodic_save(session.pk))
        self.running[session.pk] = state
        await socket.reply("profile.started", {"session": session.pk, "key": key, "max_seconds": settings.DOCKMON_PROFILE_MAX_SECONDS})

    async def _periodic_save(self, session_id: int) -> None:
        interval = settings.DOCKMON_PROFILE_SAVE_SECONDS
        limit = settings.DOCKMON_PROFILE_MAX_SECONDS
        while True:
            state = self.running.get(session_id)
            if state is None:
                return
            left = limit - (time.monotonic() - state["started"])
            if left <= 0:
                self.socket.spawn(self.stop(session_id, "max duration"))
                return
            await asyncio.sleep(min(interval, left))
            state = self.running.get(session_id)
            if state is None:
                return
            pending, state["pending"] = state["pending"], []
            if pending:
                await _save_samples(session_id, pending)

    async def stop_action(self, message) -> None:
        session_id = message.get("session")
        if session_id not in self.running:
            await self.socket.error("No such running profile on this connection.", session=session_id)
            return
        await self.stop(session_id, "stopped")

    async def stop(self, session_id: int, reason: str) -> None:
        state = self.running.pop(session_id, None)
        if state is None:
            return
        if state["saver"] is not asyncio.current_task():
            state["saver"].cancel()
        state["pump"].close()
        # Save before waiting for the reader thread: a disconnecting client's session is kept
        # even if the server gives the consumer little time to finish.
        await _save_samples(session_id, state["pending"], end_reason=reason)
        await state["pump"].join()
        try:
            await self.socket.reply("profile.stopped", {"session": session_id, "key": state["key"], "reason": reason})
        except Exception:
            pass  # the socket is gone (disconnect): the session is saved all the same

    async def stop_all(self, reason: str) -> None:
        for session_id in list(self.running):
            await self.stop(session_id, reason)

    async def recheck(self) -> None:
        """Profiles of containers the user may no longer see stop (called after each re-check)."""
        for session_id, state in list(self.running.items()):
            if not self.socket.visibility.allows(state["host"], state["key"]):
                await self.stop(session_id, "access revoked")
                await self.socket.error("Profile stopped: you no longer have access to this container.", key=state["key"],
                                        session=session_id, reason="permission")
