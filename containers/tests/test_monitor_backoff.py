"""The monitor's reconnect backoff and its periodic reconcile, against a real engine.

Backoff: a host watcher runs in this process against a TCP port that we open and close in front
of a real engine (a small forwarder to its plain-TCP endpoint: the shared testbed engines must
not be stopped). The delays the watcher waits between attempts are read off its own sleep calls
(recorded, not changed), so nothing depends on how fast this machine is.

Reconcile: `manage.py monitor` runs with a short DOCKMON_RECONCILE_SECONDS; a change whose event
the monitor never saw (the database row changed behind its back) is put right by the next
periodic reconcile.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from urllib.parse import urlparse

import pytest
from django.db import connection

from containers import monitor as monitor_module
from containers.models import Container, DockerHost
from testkit.relay import TcpRelay
from testkit.testing import wait_for

pytestmark = pytest.mark.slow


class WatcherThread:
    """One HostWatcher on its own event loop in a thread, recording each backoff delay."""

    def __init__(self, spec: monitor_module.HostSpec, delays: list[float]):
        self.spec = spec
        self.delays = delays
        self._stop = threading.Event()
        self.monitor = monitor_module.Monitor()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        watcher = monitor_module.HostWatcher(self.monitor, self.spec)
        watcher.start()
        await asyncio.get_running_loop().run_in_executor(None, self._stop.wait)
        await watcher.stop()
        # The database threads' own connections are closed before the test database goes.
        barrier = threading.Barrier(self.monitor.db_pool._max_workers)

        def close_connection():
            try:
                barrier.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass
            connection.close()

        await asyncio.gather(*(self.monitor.db(close_connection) for _ in range(self.monitor.db_pool._max_workers)))
        self.monitor.db_pool.shutdown(wait=True)
        self.monitor.engine_pool.shutdown(wait=False, cancel_futures=True)

    def start(self) -> WatcherThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)


@pytest.fixture
def recorded_delays(monkeypatch):
    """The delays HostWatcher.run sleeps between attempts, in order (the sleeps themselves run
    as asked: this only records them)."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay, *args, **kwargs):
        caller = sys._getframe(1)
        if caller.f_code is monitor_module.HostWatcher.run.__code__:
            delays.append(delay)
        return await real_sleep(delay, *args, **kwargs)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return delays


def _status(host_id) -> str:
    return DockerHost.objects.get(pk=host_id).status


@pytest.mark.django_db(transaction=True)
def test_backoff_doubles_from_the_initial_delay_is_capped_and_resets_after_a_good_session(settings, alpha, recorded_delays,
                                                                                         run_container, unique):
    settings.DOCKMON_BACKOFF_INITIAL_SECONDS = 0.05
    settings.DOCKMON_BACKOFF_MAX_SECONDS = 0.4
    settings.DOCKMON_RECONCILE_SECONDS = 3600
    target = urlparse(alpha.tcp_url)
    forwarder = TcpRelay((target.hostname, target.port))
    host = DockerHost.objects.create(name=f"backoff-{unique}", url=f"tcp://127.0.0.1:{forwarder.port}")
    spec = monitor_module.HostSpec(id=str(host.pk), name=host.name, url=host.url, fingerprint="test")
    watcher = WatcherThread(spec, recorded_delays).start()
    try:
        # Nothing listens: every attempt is refused, and the wait doubles up to the cap.
        wait_for(lambda: len(recorded_delays) >= 7, 30, message=lambda: f"seven failed attempts ({recorded_delays})")
        assert _status(host.pk) == "offline"
        assert "refused" in DockerHost.objects.get(pk=host.pk).last_error.lower()
        assert recorded_delays[:7] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4])

        # The engine is reachable again: the next attempt succeeds.
        forwarder.up()
        wait_for(lambda: _status(host.pk) == "online", 30, message="host online through the forwarder")
        # A good session: past its reconcile, applying events (a container started now shows up
        # through this watcher's events stream).
        cid = run_container(alpha, f"backoff-{unique}")
        wait_for(lambda: Container.objects.filter(pk=f"{host.pk}:{cid[:12]}").exists(), 30, message="an event applied")
        failed_before = len(recorded_delays)

        # It goes away during a good session: the first wait is the initial one again.
        forwarder.down()
        wait_for(lambda: len(recorded_delays) >= failed_before + 3, 30,
                 message=lambda: f"three attempts after the drop ({recorded_delays[failed_before:]})")
        assert recorded_delays[failed_before:failed_before + 3] == pytest.approx([0.05, 0.1, 0.2])
        assert _status(host.pk) == "offline"
    finally:
        watcher.stop()
        forwarder.down()
    assert not watcher.thread.is_alive()


def test_the_periodic_reconcile_corrects_what_a_missed_event_left_wrong(make_host, alpha, monitor, run_container, unique):
    """GIVEN a monitor whose periodic reconcile runs every second, and the database right
    WHEN the database is changed behind its back (as if events had been missed): a running
    container recorded as exited, a present one recorded as removed, and one recorded that the
    engine does not have
    THEN the next reconcile makes the database say what the engine says, with no engine event."""
    host = make_host(alpha)
    monitor(DOCKMON_RECONCILE_SECONDS="1")
    wait_for(lambda: _status(host.pk) == "online", 20, message="host online")
    running_id = run_container(alpha, f"recon-run-{unique}")
    present_id = run_container(alpha, f"recon-here-{unique}")
    keys = {cid: f"{host.pk}:{cid[:12]}" for cid in (running_id, present_id)}
    wait_for(lambda: Container.objects.filter(pk__in=keys.values(), state="running").count() == 2, 20, message="both rows running")
    ghost = Container.objects.create(host=host, short_id="0123456789ab", container_id="0123456789ab".ljust(64, "0"),
                                     name=f"recon-ghost-{unique}", state="running")

    # The fault: the database changed with no engine event to explain or undo it.
    Container.objects.filter(pk=keys[running_id]).update(state="exited", status="Exited (0)", exit_code=0)
    Container.objects.filter(pk=keys[present_id]).update(state="removed", status="Removed", removed_at=ghost.first_seen_at)

    wait_for(lambda: Container.objects.get(pk=keys[running_id]).state == "running", 20, message="exited row put right")
    wait_for(lambda: Container.objects.get(pk=keys[present_id]).removed_at is None, 20, message="removed row brought back")
    wait_for(lambda: Container.objects.get(pk=ghost.pk).removed_at is not None, 20, message="ghost marked removed")
    assert Container.objects.get(pk=keys[present_id]).state == "running"
    assert Container.objects.get(pk=keys[running_id]).exit_code is None
