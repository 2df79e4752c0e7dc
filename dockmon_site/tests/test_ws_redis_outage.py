"""WebSockets and /readyz while the channel layer's Redis is down and just after it comes back.

A Redis of the test's own (testkit/testservers.py), never the shared one: daphne runs on
it, one socket stays open through the outage, and new handshakes keep coming before, during
and right after it. Never an HTTP 500: a handshake the layer cannot serve is accepted and
closed with 4013 ("try again later") after an `error` saying why, and /readyz answers 503 until
a message makes the round trip through the layer again, after which handshakes succeed.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from accounts.models import APIToken
from containers.tests.browser import browser, live, login  # noqa: F401 (fixture)
from testkit import testing, testservers
from testkit.testing import WSClient, wait_for

pytestmark = [pytest.mark.trust, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def private_redis():
    server = testservers.PrivateRedis().start()
    yield server
    server.close()


@pytest.fixture
def web(private_redis, unique):
    port = testing.free_port()
    process = testservers.start_daphne(port, {"REDIS_URL": private_redis.url, "DOCKMON_CHANNEL_PREFIX": f"outage{unique}"})
    process.port = port
    yield process
    process.stop()


def _handshake(port: int, raw: str) -> str:
    """What a new client gets: "hello", "closed <code> <reason>", or "http <status>"."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(f"ws://127.0.0.1:{port}/ws/events/?token={raw}", open_timeout=15, ping_interval=None) as ws:
            first = json.loads(ws.recv(timeout=15))
            if first["type"] == "hello":
                return "hello"
            try:
                ws.recv(timeout=15)
            except ConnectionClosed as exc:
                return f"closed {exc.rcvd.code if exc.rcvd else None} {first['data'].get('reason')}"
            return f"unexpected {first['type']}"
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    except ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else None}"


def _ready(port: int) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=20)


def test_handshakes_and_readyz_through_a_redis_outage_and_restart(private_redis, web, admin):
    """GIVEN daphne on a private Redis, with one socket open
    WHEN Redis stops, then starts again (empty), with handshakes all along
    THEN during the outage every handshake ends with close 4013 and an `error` (reason
    "unavailable"), /readyz is 503 naming the channel layer; after the restart no handshake is
    ever a 500, /readyz turns 200 and from then on handshakes say hello; the open socket was
    told to resync and still answers."""
    _, raw = APIToken.issue(admin)
    ready = _ready(web.port)
    assert ready.status_code == 200 and ready.json()["checks"]["channel_layer"] == "ok"
    assert _handshake(web.port, raw) == "hello"
    open_socket = WSClient(f"ws://127.0.0.1:{web.port}/ws/events/?token={raw}")
    open_socket.wait_for(lambda m: m["type"] == "hello")

    private_redis.stop()
    # The web process notices at its next use of the connection (a handshake in the very first
    # moment may still be accepted; it gets its subscriptions back with the connection).
    down = wait_for(lambda: (r := _ready(web.port)).status_code == 503 and r.json(), timeout=15, message="/readyz 503")
    assert down["checks"]["channel_layer"].startswith("error"), down
    during = [_handshake(web.port, raw) for _ in range(3)]
    assert during == ["closed 4013 unavailable"] * 3, during
    assert _ready(web.port).status_code == 503

    private_redis.start()
    # A burst of handshakes in the first moments after the restart (where the issue saw a 500).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        burst = list(pool.map(lambda _: _handshake(web.port, raw), range(6)))
    assert set(burst) <= {"hello", "closed 4013 unavailable"}, burst
    outcomes, ready_at = [], None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        outcomes.append(_handshake(web.port, raw))
        if _ready(web.port).status_code == 200:
            ready_at = len(outcomes)
            break
    assert ready_at is not None, f"/readyz never came back; handshakes: {outcomes}; daphne: {web.log()}"
    after_ready = [_handshake(web.port, raw) for _ in range(5)]
    assert after_ready == ["hello"] * 5, after_ready
    assert set(outcomes) <= {"hello", "closed 4013 unavailable"}, outcomes
    print(f"handshakes right after the restart: {burst}; then until /readyz said 200: {outcomes}")

    open_socket.wait_for(lambda m: m["type"] == "stream.resync", timeout=30)
    open_socket.send({"action": "ping"})
    open_socket.wait_for(lambda m: m["type"] == "pong")
    open_socket.close()
    log = web.log()
    assert " 500 " not in log and "Internal server error" not in log and "Traceback" not in log, log


def test_an_open_page_lives_through_a_redis_restart(browser, private_redis, web, admin, make_host, alpha, monitor,  # noqa: F811
                                                    run_container, unique):
    """GIVEN the container list open in Chromium on a daphne whose Redis restarts
    WHEN Redis stops, a container stops meanwhile, and Redis comes back
    THEN the page never sees a server error and ends up live, showing the container exited."""
    from containers.models import Container
    from containers.tests.browser import row

    host = make_host(alpha)
    name = f"outage-{unique}"
    run_container(alpha, name)
    monitor(REDIS_URL=private_redis.url, DOCKMON_CHANNEL_PREFIX=f"outage{unique}")
    container = wait_for(lambda: Container.objects.filter(host=host, name=name, state="running").first(), timeout=30,
                         message="the container recorded")
    page, base = login(browser, web, "boss", "pw-boss-12345")
    failures = []
    page.on("response", lambda response: response.status >= 500 and failures.append(f"{response.status} {response.url}"))
    page.goto(f"{base}/containers/")
    live(page)

    private_redis.stop()
    alpha.docker("stop", "-t", "0", name)
    wait_for(lambda: Container.objects.get(pk=container.key).state == "exited", timeout=20, message="the stop recorded")
    time.sleep(2)
    private_redis.start()
    page.wait_for_function(f"() => document.querySelector('tr[data-key=\"{container.key}\"] .badge.state').innerText === 'exited'",
                           timeout=60_000)
    live(page)
    assert row(page, container.key).locator(".badge.state").inner_text() == "exited"
    assert not failures, failures
    assert "Traceback" not in web.log(), web.log()
