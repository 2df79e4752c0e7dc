"""The WebSocket origin check: scheme, host and port, against the request's own address and
CSRF_TRUSTED_ORIGINS; live against daphne, and in headless Chromium from a page of another
program on this machine (another loopback port), which the browser sends DockMon's session
cookie with (cookies do not care about ports)."""

from __future__ import annotations

import pytest

from accounts.models import APIToken
from containers.tests.browser import browser, live, login  # noqa: F401 (fixture)
from dockmon_site.origin import origin_allowed
from testkit import testing, testservers
from testkit.receivers import LoopbackServer
from testkit.testing import WSClient

pytestmark = pytest.mark.trust


def _scope(origin: str | None, host: str = "127.0.0.1:8000", scheme: str = "ws", **extra_headers) -> dict:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers += [(name.replace("_", "-").encode(), value.encode()) for name, value in extra_headers.items()]
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@pytest.mark.parametrize(("origin", "allowed"), [
    (None, True),                               # a program, not a browser page: on to authentication
    ("http://127.0.0.1:8000", True),            # DockMon's own page
    ("http://127.0.0.1:8000/", True),
    ("HTTP://127.0.0.1:8000", True),
    ("http://127.0.0.1:8001", False),           # another program on this machine
    ("http://127.0.0.1", False),                # port 80 is another port
    ("https://127.0.0.1:8000", False),          # another scheme
    ("http://localhost:8000", False),           # another host, though it is the same machine
    ("http://evil.example", False),
    ("null", False),                            # sandboxed frames, file:// pages
    ("http://127.0.0.1:8000@evil.example", False),
    ("http://127.0.0.1:abc", False),
])
def test_origin_is_compared_by_scheme_host_and_port(origin, allowed):
    assert origin_allowed(_scope(origin)) is allowed


def test_default_ports_and_the_secure_scheme(settings):
    assert origin_allowed(_scope("http://127.0.0.1", host="127.0.0.1")) is True
    assert origin_allowed(_scope("http://127.0.0.1:80", host="127.0.0.1")) is True
    assert origin_allowed(_scope("https://127.0.0.1", host="127.0.0.1", scheme="wss")) is True
    assert origin_allowed(_scope("http://127.0.0.1", host="127.0.0.1", scheme="wss")) is False
    # Behind a TLS proxy (SECURE_PROXY_SSL): the proxy says what the browser used.
    assert origin_allowed(_scope("https://127.0.0.1", host="127.0.0.1", x_forwarded_proto="https")) is False
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(_scope("https://127.0.0.1", host="127.0.0.1", x_forwarded_proto="https")) is True
    assert origin_allowed(_scope("http://127.0.0.1", host="127.0.0.1", x_forwarded_proto="https")) is False


def test_a_host_outside_allowed_hosts_does_not_vouch_for_itself(settings):
    """DNS rebinding: a page of rebind.example (resolving to 127.0.0.1) opening
    ws://rebind.example:8000 sends Origin and Host that agree; the Host is not DockMon's."""
    settings.ALLOWED_HOSTS = ["dockmon.example.org"]
    assert origin_allowed(_scope("http://rebind.example:8000", host="rebind.example:8000")) is False
    assert origin_allowed(_scope("http://dockmon.example.org:8000", host="dockmon.example.org:8000")) is True
    settings.USE_X_FORWARDED_HOST = True
    assert origin_allowed(_scope("https://dockmon.example.org", host="127.0.0.1:8000", x_forwarded_host="dockmon.example.org",
                                 x_forwarded_proto="https")) is False  # https only with SECURE_PROXY_SSL
    assert origin_allowed(_scope("http://dockmon.example.org", host="127.0.0.1:8000", x_forwarded_host="dockmon.example.org")) is True


def test_csrf_trusted_origins_match_exactly_or_by_subdomain_wildcard(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://dockmon.example.org", "https://*.corp.example", "http://127.0.0.1:9000"]
    assert origin_allowed(_scope("https://dockmon.example.org")) is True
    assert origin_allowed(_scope("https://dockmon.example.org:443")) is True
    assert origin_allowed(_scope("https://dockmon.example.org:8443")) is False
    assert origin_allowed(_scope("http://dockmon.example.org")) is False
    assert origin_allowed(_scope("https://ops.corp.example")) is True
    assert origin_allowed(_scope("https://corp.example")) is True
    assert origin_allowed(_scope("https://evilcorp.example")) is False
    assert origin_allowed(_scope("http://127.0.0.1:9000")) is True
    assert origin_allowed(_scope("http://127.0.0.1:9001")) is False


@pytest.mark.slow
def test_daphne_refuses_a_foreign_port_origin_and_accepts_its_own(daphne, admin):
    from websockets.exceptions import InvalidStatus

    _, raw = APIToken.issue(admin)
    url = f"ws://127.0.0.1:{daphne.port}/ws/events/?token={raw}"
    with pytest.raises(InvalidStatus) as refused:
        WSClient(url, headers={"Origin": f"http://127.0.0.1:{daphne.port + 1}"})
    assert refused.value.response.status_code == 403
    own = WSClient(url, headers={"Origin": f"http://127.0.0.1:{daphne.port}"})
    own.wait_for(lambda m: m["type"] == "hello")
    own.close()
    tool = WSClient(url)  # no Origin: a program with a token
    tool.wait_for(lambda m: m["type"] == "hello")
    tool.close()


_FOREIGN_PAGE = """<!doctype html><html><body><p>Another program's page</p><script>
window.result = {opened: false, closed: false, code: null, messages: []};
const ws = new WebSocket("ws://127.0.0.1:%(port)d/ws/events/");
ws.onopen = function () { window.result.opened = true; };
ws.onmessage = function (e) { window.result.messages.push(e.data); };
ws.onclose = function (e) { window.result.closed = true; window.result.code = e.code; };
</script></body></html>"""


def _foreign_site(target_port: int) -> LoopbackServer:
    """A page served by another program on this machine, on its own loopback port."""
    page = (_FOREIGN_PAGE % {"port": target_port}).encode()
    return LoopbackServer(lambda request: (200, {"Content-Type": "text/html; charset=utf-8"}, page))


def _foreign_socket(page, site) -> dict:
    page.goto(site.url())
    page.wait_for_function("() => window.result.closed || window.result.messages.length > 0", timeout=10_000)
    page.wait_for_timeout(300)  # anything else the server would send
    return page.evaluate("() => window.result")


@pytest.mark.slow
def test_a_page_on_another_loopback_port_cannot_open_the_socket_while_dockmons_own_page_can(
    browser, admin, daphne  # noqa: F811
):
    """GIVEN a signed-in browser (DockMon's session cookie for 127.0.0.1 goes to any port)
    WHEN a page served from another loopback port opens ws://127.0.0.1:<DockMon>/ws/events/
    THEN the handshake is refused (the socket never opens, no message), while DockMon's own
    page in the same browser is live; and a DockMon with that kind of page's origin in
    CSRF_TRUSTED_ORIGINS lets the very same page in (the refusal is the origin check)."""
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    live(page)  # DockMon's own page: connected
    site = _foreign_site(daphne.port)
    try:
        result = _foreign_socket(page.context.new_page(), site)
        assert result["opened"] is False and result["messages"] == [] and result["closed"] is True, result
        assert f"origin {site.url('')} is not this site" in daphne.log()
        page.reload()
        live(page)  # DockMon's own page still connects
    finally:
        site.close()

    port = testing.free_port()
    trusted_site = _foreign_site(port)
    trusting = testservers.start_daphne(port, {"CSRF_TRUSTED_ORIGINS": trusted_site.url("")})
    try:
        result = _foreign_socket(page.context.new_page(), trusted_site)  # same browser: same session cookie
        assert result["opened"] is True, result
        assert '"hello"' in result["messages"][0]
    finally:
        trusting.stop()
        trusted_site.close()
