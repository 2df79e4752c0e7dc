"""Fault tolerance, each fault made real: Redis and PostgreSQL restarted (private servers of the
test's own), the monitor killed, an engine that accepts TCP but never answers.

(An engine killed and restarted: containers/tests/test_monitor_live.py; a worker killed in the
middle of an update: updates/tests/test_worker_crash.py; a monitor killed while another runs:
containers/tests/test_monitor_scaleout.py.)
"""

from __future__ import annotations

import re
import socket
import time

import pytest
import requests

from accounts.models import APIToken
from containers.models import Container, DockerHost
from containers.tests.browser import browser  # noqa: F401 (fixture)
from testkit import testing, testservers
from testkit.testing import WSClient, sign_in, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _ws(port: int, raw: str) -> WSClient:
    client = WSClient(f"ws://127.0.0.1:{port}/ws/events/?token={raw}")
    client.wait_for(lambda m: m["type"] == "hello", timeout=10)
    return client


def _state_message(key: str, state: str):
    return lambda m: m["type"] == "container.state" and m["data"]["key"] == key and m["data"]["state"] == state


def _row(host, name):
    return Container.objects.filter(host=host, name=name, removed_at__isnull=True).first()


@pytest.fixture
def private_redis():
    server = testservers.PrivateRedis().start()
    yield server
    server.close()


@pytest.fixture
def processes():
    started: list[testing.ManagedProcess] = []
    yield started
    for process in reversed(started):
        process.stop()


def test_redis_restarted_web_workers_and_monitor_reconnect_and_nothing_is_lost(
    private_redis, processes, admin, make_host, alpha, run_container, unique
):
    """GIVEN daphne, a worker, beat and the monitor on a Redis of the test's own
    WHEN that Redis stops for a while and starts again empty
    THEN the monitor kept recording what happened meanwhile, the open WebSocket gets events
    again, and the scheduled work (health checks) runs again without anyone restarting anything."""
    from healthchecks.models import CheckResult, HealthCheck

    env = {"REDIS_URL": private_redis.url, "DOCKMON_CHANNEL_PREFIX": f"fault{unique}"}
    host = make_host(alpha)
    name = f"redis-{unique}"
    run_container(alpha, name)
    web_port = testing.free_port()
    processes.append(testing.start_monitor(**env))
    processes.append(testservers.start_daphne(web_port, env))
    processes.append(testservers.start_worker(env))
    processes.append(testservers.start_beat(env))
    row = wait_for(lambda: _row(host, name), timeout=30, message="the container recorded")
    key = row.key

    # A health check against DockMon's own /healthz: scheduled by beat, run by the worker.
    check = HealthCheck.objects.create(container=row, url=f"http://127.0.0.1:{web_port}/healthz", interval_seconds=10, timeout_seconds=3)
    wait_for(lambda: CheckResult.objects.filter(health_check=check).exists(), timeout=60, message="a first health-check result")

    _, raw = APIToken.issue(admin, name="ws")
    ws = _ws(web_port, raw)
    alpha.docker("stop", "-t", "0", name)
    ws.wait_for(_state_message(key, "exited"), timeout=15)

    private_redis.stop()
    # Redis is down: the engine's events still reach the database.
    alpha.docker("start", name)
    wait_for(lambda: Container.objects.get(pk=key).state == "running", timeout=20, message="the start recorded while Redis is down")
    # The API still answers (it does not need Redis to read the inventory).
    listing = requests.get(f"http://127.0.0.1:{web_port}/api/v1/containers/?search={name}", headers={"Authorization": f"Token {raw}"},
                           timeout=15)
    assert listing.status_code == 200 and listing.json()["count"] == 1
    time.sleep(3)  # down for a while: clients and workers see their connections fail
    private_redis.start()
    restarted = time.monotonic()

    # The same socket stays open: it is told to resync (it may have missed events), then gets
    # live events again.
    ws.messages.clear()
    ws.wait_for(lambda m: m["type"] == "stream.resync", timeout=30)
    alpha.docker("stop", "-t", "0", name)
    ws.wait_for(_state_message(key, "exited"), timeout=30)
    reconnect = time.monotonic() - restarted
    # Scheduled work resumes: new results after the restart.
    after = CheckResult.objects.filter(health_check=check).count()
    wait_for(lambda: CheckResult.objects.filter(health_check=check).count() > after, timeout=60,
             message=lambda: f"health checks running again; worker: {processes[2].log()} beat: {processes[3].log()}")
    print(f"events flowing again {reconnect:.1f} s after Redis came back")
    ws.close()


def test_a_killed_monitor_restarted_reconciles_the_gap_without_waiting_for_its_lease(monitor, make_host, alpha, run_container, unique):
    """GIVEN the monitor watching a host, with host leases of 60 s
    WHEN it is killed with SIGKILL, containers change, and a monitor starts again
    THEN the new monitor takes the host at once (the dead process's lease is freed, not waited
    out) and what changed during the gap is in the database."""
    env = {"DOCKMON_MONITOR_LEASE_SECONDS": "60", "DOCKMON_RECONCILE_SECONDS": "3600"}
    host = make_host(alpha)
    doomed = f"doomed-{unique}"
    run_container(alpha, doomed)
    first = monitor(**env)
    wait_for(lambda: _row(host, doomed) is not None, timeout=30, message="initial sync")
    first.kill()

    born = f"born-{unique}"
    run_container(alpha, born)
    alpha.docker("rm", "-f", doomed)
    monitor(**env)
    wait_for(lambda: _row(host, born) is not None, timeout=30, message="the container started during the gap (well before 60 s)")
    assert _row(host, born).state == "running"
    wait_for(lambda: Container.objects.get(host=host, name=doomed).removed_at is not None, timeout=15, message="the removal in the gap")


class _SilentEngine:
    """Accepts TCP connections and never says a word (a hung engine or a black-holing proxy)."""

    def __init__(self):
        import threading

        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(50)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.listener.close()
        for conn in self.held:
            conn.close()


def test_an_engine_that_accepts_but_never_answers_times_out_and_other_hosts_are_unaffected(
    admin_client, monitor, make_host, alpha, run_container, unique
):
    silent = _SilentEngine()
    try:
        hung = DockerHost.objects.create(name=f"hung-{unique}", url=f"tcp://127.0.0.1:{silent.port}")
        host = make_host(alpha)
        name = f"fine-{unique}"
        run_container(alpha, name)
        monitor(DOCKMON_ENGINE_TIMEOUT="2", DOCKMON_RECONCILE_SECONDS="3600")
        wait_for(lambda: _row(host, name) is not None and DockerHost.objects.get(pk=host.pk).status == "online", timeout=30,
                 message="the healthy host watched")
        hung_row = wait_for(lambda: DockerHost.objects.filter(pk=hung.pk).exclude(status="unknown").first(), timeout=30,
                            message="the hung host's status")
        assert hung_row.status == "offline" and "did not answer in time" in hung_row.last_error
        # The hung host never holds up the other one: its events arrive while the monitor keeps
        # retrying the hung one.
        alpha.docker("stop", "-t", "0", name)
        wait_for(lambda: _row(host, name).state == "exited", timeout=15, message="a stop on the healthy host")
        # The API answers for both, and testing the hung host is a clear status within its timeout.
        assert admin_client.get(f"/api/v1/hosts/{hung.pk}/").status_code == 200
        started = time.monotonic()
        tested = admin_client.post(f"/api/v1/hosts/{hung.pk}/test/")
        assert tested.status_code == 200, tested.content
        assert tested.data["ok"] is False and tested.data["status"] == "offline" and "did not answer in time" in tested.data["error"]
        assert time.monotonic() - started < 60  # bounded by the probe timeout, never a hang
    finally:
        silent.close()


def test_postgresql_restarted_requests_fail_clearly_then_everything_recovers(processes, alpha, run_container, unique):
    """GIVEN daphne and the monitor on a PostgreSQL of the test's own
    WHEN PostgreSQL stops and starts again
    THEN API requests meanwhile get a clear 503 (never a 500 or a hang), /readyz says the
    database is down, and afterwards requests and the monitor carry on by themselves, with what
    happened on the engine meanwhile reconciled."""
    pg = testservers.PrivatePostgres().init().start()
    try:
        pg.sql("CREATE DATABASE dockmon_fault")
        env = {"DATABASE_URL": pg.url("dockmon_fault"), "DB_CONN_MAX_AGE": "60", "DB_CONNECT_TIMEOUT": "3",
               "DOCKMON_RECONCILE_SECONDS": "3600", "DOCKMON_CHANNEL_PREFIX": f"fault{unique}"}
        subprocess_env = testing.subprocess_env(**env)
        import subprocess
        import sys

        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=subprocess_env, check=True, timeout=300,
                       cwd=testing.BASE_DIR)
        script = (
            "from django.contrib.auth import get_user_model; from accounts.models import APIToken; "
            "u = get_user_model().objects.create_superuser('boss', password='pw-boss-12345'); print(APIToken.issue(u, name='t')[1])"
        )
        raw = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], env=subprocess_env, check=True, timeout=120,
                             capture_output=True, text=True, cwd=testing.BASE_DIR).stdout.strip().splitlines()[-1]
        auth = {"Authorization": f"Token {raw}"}
        web_port = testing.free_port()
        base = f"http://127.0.0.1:{web_port}"
        processes.append(testservers.start_daphne(web_port, env))
        processes.append(testing.start_monitor(**env))
        name = f"pg-{unique}"
        run_container(alpha, name)
        created = requests.post(f"{base}/api/v1/hosts/", json={"name": f"alpha-{unique}", "url": alpha.unix_url}, headers=auth, timeout=30)
        assert created.status_code == 201, created.text

        def containers():
            return requests.get(f"{base}/api/v1/containers/?search={name}", headers=auth, timeout=20)

        wait_for(lambda: containers().json()["count"] == 1, timeout=30, message="the container listed")

        browser = requests.Session()
        form = browser.get(f"{base}/login/", timeout=20).text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)

        pg.stop()
        outage = [containers() for _ in range(3)]
        assert {r.status_code for r in outage} == {503}, [r.text[:200] for r in outage]
        assert "database" in outage[0].json()["detail"].lower()
        ready = requests.get(f"{base}/readyz", timeout=20)
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert requests.get(f"{base}/healthz", timeout=20).status_code == 200  # the process itself is alive
        # A person logging in meanwhile gets a page that says what is wrong.
        page = browser.post(f"{base}/login/", data={"username": "boss", "password": "pw-boss-12345", "csrfmiddlewaretoken": csrf},
                            headers={"Referer": f"{base}/login/"}, timeout=20)
        assert page.status_code == 503 and "cannot reach its database" in page.text
        alpha.docker("stop", "-t", "0", name)  # happens while DockMon cannot record it

        pg.start()
        wait_for(lambda: containers().status_code == 200, timeout=30, message="the API back")
        assert requests.get(f"{base}/readyz", timeout=20).status_code == 200
        wait_for(lambda: containers().json()["results"][0]["state"] == "exited", timeout=60,
                 message=lambda: f"the stop during the outage reconciled; monitor: {processes[1].log()}")
        alpha.docker("start", name)
        wait_for(lambda: containers().json()["results"][0]["state"] == "running", timeout=30, message="live events again")
    finally:
        for process in reversed(processes):
            process.stop()
        processes.clear()
        pg.close()


def test_a_browser_page_that_missed_events_while_its_socket_was_down_shows_the_truth_again(
    browser, admin, make_host, alpha, monitor, run_container, unique,  # noqa: F811
):
    """GIVEN the container list open in Chromium
    WHEN the web process goes away, a container stops meanwhile, and the web process comes back
    THEN the page reconnects, knows its stream had a hole, and shows the container exited."""
    from containers.tests.browser import live, row

    port = testing.free_port()
    web = testing.start_daphne(port)
    try:
        host = make_host(alpha)
        name = f"gap-{unique}"
        run_container(alpha, name)
        monitor()
        container = wait_for(lambda: Container.objects.filter(host=host, name=name, state="running").first(), timeout=30,
                             message="the container recorded")
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        base = f"http://127.0.0.1:{port}"
        sign_in(page, base, "boss", "pw-boss-12345")
        page.goto(f"{base}/containers/")
        live(page)
        assert row(page, container.key).locator(".badge.state").inner_text() == "running"
        page.evaluate("() => { window.__before = true; }")

        web.stop()
        page.wait_for_selector("#live-dot.off")
        alpha.docker("stop", "-t", "0", name)  # streamed to nobody: no web process
        wait_for(lambda: Container.objects.get(pk=container.key).state == "exited", timeout=20, message="the stop recorded")
        web = testing.start_daphne(port)

        page.wait_for_function("() => window.__before === undefined", timeout=30_000)  # reloaded after the reconnect
        live(page)
        assert row(page, container.key).locator(".badge.state").inner_text() == "exited"
        context.close()
    finally:
        web.stop()
