"""The live profiler of /ws/events/: profile.start / profile.stop (a mixin of EventsConsumer).

A profile writes a ProfileSession row and saves its samples as it goes, so it is a write:
refused to a read-only token. Limits: MAX_PROFILES per connection;
DOCKMON_PROFILE_MAX_PER_USER open sessions per user across every socket and web process
(counted in the database: rows without ended_at, started within the maximum duration, so a
row left open by a killed process stops counting once it is that old); and
DOCKMON_PROFILE_MAX_SECONDS, after which a profile stops by itself with reason "max duration".
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from containers import engine
from containers.engine import stats as engine_stats
from containers.streams import StreamPump
from dockmon_site import realtime

MAX_PROFILES = 3


class ProfileLimitReached(Exception):
    pass


class ProfilesMixin:
    # --- database ---------------------------------------------------------------------------
    @database_sync_to_async
    def _open_session(self, container):
        from django.contrib.auth import get_user_model

        from containers.models import ProfileSession

        cap = settings.DOCKMON_PROFILE_MAX_PER_USER
        with transaction.atomic():
            # Serialises concurrent starts of one user (other sockets, other web processes).
            get_user_model().objects.select_for_update().filter(pk=self.user.pk).first()
            recent = timezone.now() - timedelta(seconds=settings.DOCKMON_PROFILE_MAX_SECONDS)
            if ProfileSession.objects.filter(user_id=self.user.pk, ended_at__isnull=True, started_at__gt=recent).count() >= cap:
                raise ProfileLimitReached(cap)
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

    # --- actions ----------------------------------------------------------------------------
    async def _start_profile(self, message):
        key = message.get("key")
        if self.read_only:
            # A profile writes a ProfileSession row: a read-only token may only read.
            await self._error("This token is read-only: it cannot start a profile.", key=key, reason="read_only")
            return
        container = await self._container_for(key, "view")  # guarded by `view` on the container (or its host)
        if container is None:
            await self._error("No such container.", key=key)
            return
        if len(self.profiles) >= MAX_PROFILES:
            await self._error(f"At most {MAX_PROFILES} profiles per connection.", key=key, reason="limit")
            return
        try:
            session = await self._open_session(container)
        except ProfileLimitReached as exc:
            await self._error(f"At most {exc.args[0]} profiles may run at once per user; stop one first.", key=key, reason="limit")
            return
        host, container_id = container.host, container.container_id
        state = {"key": key, "host": str(container.host_id), "pending": [], "pump": None, "saver": None, "started": time.monotonic()}

        def open_stream():
            client = engine.client_for_host(host, timeout=engine.NO_TIMEOUT)
            return engine_stats.stats_stream(client, container_id), client

        def on_item(doc):
            if session.pk not in self.profiles:
                return
            sample = engine_stats.compute_stats(container_id, doc)
            row = [realtime.utc_iso(sample.ts), sample.cpu_percent, sample.mem_bytes, sample.mem_limit,
                   sample.net_rx, sample.net_tx, sample.blk_read, sample.blk_write, sample.pids]
            state["pending"].append(row)
            self._spawn(self._reply("profile.sample", {
                "session": session.pk, "key": key, "t": row[0], "cpu_percent": sample.cpu_percent, "mem_bytes": sample.mem_bytes,
                "mem_limit": sample.mem_limit, "net_rx": sample.net_rx, "net_tx": sample.net_tx, "blk_read": sample.blk_read,
                "blk_write": sample.blk_write, "pids": sample.pids,
            }))

        def on_end(error):
            if session.pk in self.profiles:
                self._spawn(self._stop_profile(session.pk, "container stopped" if error is None else "engine error"))

        state["pump"] = StreamPump(f"profile {key}", open_stream, on_item, on_end).start()
        state["saver"] = asyncio.ensure_future(self._periodic_save(session.pk))
        self.profiles[session.pk] = state
        await self._reply("profile.started", {"session": session.pk, "key": key, "max_seconds": settings.DOCKMON_PROFILE_MAX_SECONDS})

    async def _periodic_save(self, session_id: int) -> None:
        interval = settings.DOCKMON_PROFILE_SAVE_SECONDS
        limit = settings.DOCKMON_PROFILE_MAX_SECONDS
        while True:
            state = self.profiles.get(session_id)
            if state is None:
                return
            left = limit - (time.monotonic() - state["started"])
            if left <= 0:
                self._spawn(self._stop_profile(session_id, "max duration"))
                return
            await asyncio.sleep(min(interval, left))
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
        if state["saver"] is not asyncio.current_task():
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

    async def _recheck_profiles(self) -> None:
        """Profiles of containers the user may no longer see stop (called after each re-check)."""
        for session_id, state in list(self.profiles.items()):
            if not self.visibility.allows(state["host"], state["key"]):
                await self._stop_profile(session_id, "access revoked")
                await self._error("Profile stopped: you no longer have access to this container.", key=state["key"], session=session_id,
                                  reason="permission")
