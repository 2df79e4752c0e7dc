"""The monitor: one asyncio task per Docker host, following its events stream.

For each host it connects, opens the events stream, reconciles the full container list, then
applies every container event to the database as it arrives (and publishes it through the
bus). A lost connection marks the host offline and is retried with exponential backoff; a full
reconcile runs on every (re)connect and every DOCKMON_RECONCILE_SECONDS. Hosts added, changed
or removed in the database are picked up while it runs. Blocking SDK and ORM calls run in
thread pools, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connection

from containers import engine, engine_objects, leases, services
from containers.choices import HostStatus
from containers.engine import facts as engine_facts
from containers.models import Container, DockerHost
from dockmon_site import realtime

logger = logging.getLogger(__name__)

# Engine actions that can change what we store about a container. Others (exec_*, attach,
# resize, top, copy...) are ignored.
WATCHED_ACTIONS = frozenset(
    {"create", "start", "restart", "die", "pause", "unpause", "rename", "health_status", "oom", "update", "destroy",
     "kill", "stop"}  # kill/stop: tell a `docker stop` by a person from a crash (services.apply_event, stop intent)
)
# Actions whose event carries all we need; the others ("create", "update") need an inspect.
EVENT_ONLY_ACTIONS = frozenset({"start", "restart", "die", "pause", "unpause", "rename", "health_status", "oom", "kill", "stop"})
_END = object()


@dataclass(frozen=True)
class HostSpec:
    id: str
    name: str
    url: str
    fingerprint: str


def _load_host_specs(shard_index: int, shard_count: int) -> list[HostSpec]:
    close_old_connections()
    specs = []
    for host in DockerHost.objects.filter(enabled=True).only("id", "name", "url", "tls_ca", "tls_cert", "tls_key"):
        if shard_count > 1 and uuid.UUID(str(host.id)).int % shard_count != shard_index:
            continue
        digest = hashlib.sha256("\0".join((host.url, host.tls_ca, host.tls_cert, host.tls_key)).encode()).hexdigest()
        specs.append(HostSpec(id=str(host.id), name=host.name, url=host.url, fingerprint=digest))
    return specs


class Monitor:
    def __init__(self, *, shard: tuple[int, int] = (0, 1), once: bool = False, instance_id: str | None = None):
        self.shard = shard
        self.once = once
        # Several monitors split the hosts by leases in the database (containers.leases).
        self.instance_id = instance_id or leases.new_instance_id()
        self.owned: set[str] = set()
        self.reconcile_seconds = settings.DOCKMON_RECONCILE_SECONDS
        self.refresh_seconds = settings.DOCKMON_HOST_REFRESH_SECONDS
        self.backoff_initial = settings.DOCKMON_BACKOFF_INITIAL_SECONDS
        self.backoff_max = settings.DOCKMON_BACKOFF_MAX_SECONDS
        self.engine_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="engine")
        # SQLite takes one writer at a time: one DB thread avoids lock contention there.
        db_threads = 1 if connection.vendor == "sqlite" else 4
        self.db_pool = ThreadPoolExecutor(max_workers=db_threads, thread_name_prefix="db")
        self.watchers: dict[str, HostWatcher] = {}
        self.stopping: asyncio.Event | None = None

    async def db(self, func, *args, **kwargs):
        def run():
            close_old_connections()
            return func(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self.db_pool, run)

    async def engine_call(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self.engine_pool, func, *args)

    def request_stop(self) -> None:
        if self.stopping is not None:
            self.stopping.set()

    async def run(self) -> None:
        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        logger.info("monitor started: %s (shard %s/%s)", self.instance_id, *self.shard)
        registered = False
        try:
            if self.once:
                await self._run_once()
                return
            while not self.stopping.is_set():
                if not registered:
                    try:
                        await self.db(leases.register, self.instance_id, shard=f"{self.shard[0]}/{self.shard[1]}")
                        registered = True
                    except Exception:
                        logger.exception("could not register this monitor; trying again")
                try:
                    await self.refresh_hosts()
                except Exception:  # the database may be restarting; keep the watchers going
                    logger.exception("could not refresh the host list")
                try:
                    await asyncio.wait_for(self.stopping.wait(), timeout=self.refresh_seconds)
                except TimeoutError:
                    pass
        finally:
            await self.stop_all()
            if registered:
                try:
                    # Give the hosts back at once: another monitor takes them on its next round.
                    released = await self.db(leases.unregister, self.instance_id)
                    logger.info("monitor %s released %s host lease(s)", self.instance_id, released)
                except Exception:
                    logger.exception("could not release the host leases (they expire by themselves)")
            self.engine_pool.shutdown(wait=False, cancel_futures=True)
            self.db_pool.shutdown(wait=True)
            # The publisher sends from a daemon thread: hand it everything before we exit.
            await asyncio.to_thread(realtime.flush, 10)
            logger.info("monitor stopped")

    async def _run_once(self) -> None:
        specs = await self.db(_load_host_specs, *self.shard)
        await asyncio.gather(*(HostWatcher(self, spec).sync_once() for spec in specs))

    async def refresh_hosts(self) -> None:
        specs = {spec.id: spec for spec in await self.db(_load_host_specs, *self.shard)}
        result = await self.db(leases.balance, self.instance_id, set(specs))
        if result.claimed or result.surplus:
            logger.info(
                "monitor %s: watching %s host(s) (claimed %s, giving back %s; %s live monitor(s), share %s)",
                self.instance_id, len(result.owned), len(result.claimed), len(result.surplus), result.live_monitors,
                result.fair_share,
            )
        self.owned = result.owned
        specs = {host_id: spec for host_id, spec in specs.items() if host_id in result.owned}
        if result.surplus:
            for host_id in result.surplus:
                watcher = self.watchers.pop(host_id, None)
                if watcher is not None:
                    await watcher.stop()
            await self.db(leases.release, self.instance_id, result.surplus)
        for host_id, watcher in list(self.watchers.items()):
            spec = specs.get(host_id)
            if spec is None or spec.fingerprint != watcher.spec.fingerprint:
                await watcher.stop()
                del self.watchers[host_id]
        for host_id, spec in specs.items():
            if host_id not in self.watchers:
                watcher = HostWatcher(self, spec)
                self.watchers[host_id] = watcher
                watcher.start()

    async def stop_all(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.watchers.values()), return_exceptions=True)
        self.watchers.clear()


class HostWatcher:
    def __init__(self, monitor: Monitor, spec: HostSpec):
        self.monitor = monitor
        self.spec = spec
        self.task: asyncio.Task | None = None
        self._stream = None
        self._client = None
        self._stopped = False

    def start(self) -> None:
        logger.info("watch start %s (%s)", self.spec.id, self.spec.name)
        self.task = asyncio.create_task(self.run(), name=f"watch {self.spec.name}")

    async def stop(self) -> None:
        logger.info("watch stop %s (%s)", self.spec.id, self.spec.name)
        self._stopped = True
        self._close_stream()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    async def run(self) -> None:
        delay = self.monitor.backoff_initial
        while not self._stopped:
            try:
                async for _ in self.session():
                    delay = self.monitor.backoff_initial
            except asyncio.CancelledError:
                raise
            except engine.EngineError as exc:
                status = HostStatus.OFFLINE if exc.unreachable else HostStatus.ERROR
                logger.warning("host %s: %s", self.spec.name, exc)
                await self._set_status(status, str(exc))
            except Exception as exc:  # keep watching whatever went wrong
                if not await self._host_exists():
                    # Deleted while we were busy with it; the refresh loop drops this watcher.
                    logger.info("host %s was removed; stopping its watcher", self.spec.name)
                    break
                logger.exception("host %s: watcher failed", self.spec.name)
                await self._set_status(HostStatus.ERROR, f"Monitor error: {exc}")
            finally:
                self._close_stream()
            if self._stopped:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.monitor.backoff_max)

    async def _host_exists(self) -> bool:
        try:
            return await self.monitor.db(lambda: DockerHost.objects.filter(pk=self.spec.id).exists())
        except Exception:
            return True  # the database itself is in trouble: keep trying

    async def _set_status(self, status: str, error: str = "", info=None) -> None:
        try:
            await self.monitor.db(services.set_host_status, self.spec.id, status, error=error, info=info)
        except Exception:
            logger.exception("host %s: could not record status %s", self.spec.name, status)

    async def _connect(self):
        host = await self.monitor.db(DockerHost.objects.get, pk=self.spec.id)
        client = await self.monitor.engine_call(engine.client_for_host, host)
        self._client = client
        info = await self.monitor.engine_call(engine.engine_info, client)
        return client, info

    async def sync_once(self) -> None:
        try:
            client, info = await self._connect()
            await self._set_status(HostStatus.ONLINE, "", info)
            await self.reconcile(client, initial=True)
        except engine.EngineError as exc:
            await self._set_status(HostStatus.OFFLINE if exc.unreachable else HostStatus.ERROR, str(exc))
        finally:
            self._close_stream()

    async def session(self):
        """One connection's life. Yields once connected; returns or raises when it ends."""
        loop = asyncio.get_running_loop()
        client, info = await self._connect()
        # Open the stream before reconciling so that nothing happening in between is missed.
        self._stream = await self.monitor.engine_call(engine_facts.open_event_stream, client)
        queue: asyncio.Queue = asyncio.Queue()
        reader = threading.Thread(
            target=self._read_stream, args=(self._stream, loop, queue), name=f"events {self.spec.name}", daemon=True
        )
        reader.start()
        await self._set_status(HostStatus.ONLINE, "", info)
        await self.reconcile(client, initial=True)
        yield
        while not self._stopped:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=self.monitor.reconcile_seconds)
            except TimeoutError:
                await self.monitor.engine_call(engine.ping, client)
                await self.reconcile(client)
                continue
            if item is _END:
                raise engine.EngineError("The events stream closed (engine stopped or unreachable).", unreachable=True)
            if isinstance(item, BaseException):
                raise engine.wrap_error(item)
            await self.handle(client, item)

    def _read_stream(self, stream, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        outcome: object = _END
        try:
            for raw in stream:
                event = engine_facts.to_engine_event(raw)
                if event is not None and event.action in WATCHED_ACTIONS:
                    loop.call_soon_threadsafe(queue.put_nowait, event)
                elif event is None and (changed := engine_facts.to_object_event(raw)) is not None:
                    loop.call_soon_threadsafe(queue.put_nowait, changed)
        except engine.ENGINE_FAILURES as exc:
            outcome = exc
        except Exception as exc:  # urllib3 raises its own types on a cut stream
            outcome = exc
        if not self._stopped and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(queue.put_nowait, outcome)
            except RuntimeError:
                pass

    async def handle(self, client, event: engine_facts.EngineEvent | engine_facts.ObjectEvent) -> None:
        host_id = self.spec.id
        if isinstance(event, engine_facts.ObjectEvent):
            await self.monitor.db(engine_objects.announce, host_id, event)
            return
        if event.action == "destroy":
            await self.monitor.db(services.remove_by_id, host_id, event.container_id)
            return
        if event.action in EVENT_ONLY_ACTIONS:
            if await self.monitor.db(services.apply_event, host_id, event) is not None:
                if event.action != "start":
                    return
                # Announced already; now read what only an inspect tells (restart count, ports).
            # Not known yet (created while we were reconnecting): fall through to a full inspect.
        try:
            facts = await self.monitor.engine_call(engine_facts.inspect_container, client, event.container_id)
        except engine.ContainerGone:
            await self.monitor.db(services.remove_by_id, host_id, event.container_id)
            return
        await self.monitor.db(services.apply_facts, host_id, facts)

    async def reconcile(self, client, *, initial: bool = False) -> dict:
        summaries = await self.monitor.engine_call(engine_facts.list_containers, client)
        known = await self.monitor.db(_known_state, self.spec.id)
        # Inspect only what is new or changed: the list call lacks start times and restarts.
        stale = [f for f in summaries if known.get(f.container_id[:12]) != (f.state, f.health, f.name)]
        semaphore = asyncio.Semaphore(16)

        async def inspect(facts):
            async with semaphore:
                try:
                    return await self.monitor.engine_call(engine_facts.inspect_container, client, facts.container_id)
                except engine.ContainerGone:
                    return None

        inspected = await asyncio.gather(*(inspect(f) for f in stale))
        replacement = {f.container_id: f for f in inspected if f is not None}
        gone = {f.container_id for f, result in zip(stale, inspected, strict=True) if result is None}
        facts = [replacement.get(f.container_id, f) for f in summaries if f.container_id not in gone]
        result = await self.monitor.db(services.reconcile, self.spec.id, facts, initial=initial)
        await self.monitor.db(services.touch_host, self.spec.id)
        logger.info("host %s reconciled: %s", self.spec.name, result)
        return result


def _known_state(host_id: str) -> dict[str, tuple[str, str, str]]:
    rows = Container.objects.filter(host_id=host_id, removed_at__isnull=True).values_list("short_id", "state", "health", "name")
    return {short: (state, health, name) for short, state, health, name in rows}


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/", 1))
    except ValueError:
        raise ValueError("--shard takes i/n, e.g. 0/2") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError("--shard i/n needs 0 <= i < n")
    return index, count
