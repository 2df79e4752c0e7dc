"""DockMon under a sub-path, as behind a reverse proxy that passes /dockmon/... unchanged
(DOCKMON_URL_PREFIX, and daphne --root-path from it): pages, redirects, static files, API calls made by the
pages, links built by the page scripts and the WebSocket all stay under the prefix."""

from __future__ import annotations

import sys

import pytest
import requests

from containers.models import Container
from containers.tests.browser import browser, live, row  # noqa: F401 (fixture)
from testkit import testing

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PREFIX = "/dockmon"


@pytest.fixture
def prefixed_daphne(transactional_db):
    port = testing.free_port()
    argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "--root-path", PREFIX, "dockmon_site.asgi:application"]
    env = testing.subprocess_env(DOCKMON_URL_PREFIX=PREFIX)  # as docker/entrypoint.sh and scripts/run.sh pass both
    process = testing.ManagedProcess("daphne-subpath", argv, env, testing.log_dir()).start()
    testing.wait_for(lambda: _answers(port), timeout=30, message="daphne under the prefix")
    process.port = port
    yield process
    process.stop()


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}{PREFIX}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_everything_stays_under_the_prefix(prefixed_daphne, browser, admin, make_host, alpha, monitor, run_container, unique):  # noqa: F811
    base = f"http://127.0.0.1:{prefixed_daphne.port}{PREFIX}"
    # Redirects and the static files of the login page.
    anonymous = requests.get(f"{base}/", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith(f"{PREFIX}/login/")
    login_page = requests.get(f"{base}/login/", timeout=10).text
    assert f'src="{PREFIX}/static/dockmon/live.js"' in login_page
    assert requests.get(f"{base}/static/dockmon/live.js", timeout=10).status_code == 200

    host = make_host(alpha)
    name = f"sub-{unique}"
    run_container(alpha, name)
    monitor()
    container = testing.wait_for(lambda: Container.objects.filter(host=host, name=name, state="running").first(), timeout=30,
                                 message="the container recorded")

    failures: list[str] = []
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    testing.sign_in(page, base, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/")
    live(page)  # the WebSocket at /dockmon/ws/events/ is open
    link = row(page, container.key).locator("a.name")
    assert link.get_attribute("href") == f"{PREFIX}/containers/{container.key}/"  # built by the page script
    link.click()
    page.wait_for_url(f"{base}/containers/{container.key}/")
    live(page)
    # The page's own API calls (settings) answer under the prefix, and live state still arrives.
    page.wait_for_function("() => !document.getElementById('settings-info') || !/unavailable/i.test(document.getElementById('settings-info').textContent)")
    alpha.docker("stop", "-t", "0", name)
    page.wait_for_function("() => document.body.innerText.includes('exited')", timeout=15_000)
    assert page.locator("#log-download").get_attribute("href").startswith(f"{PREFIX}/api/v1/containers/")
    assert not [f for f in failures if "/favicon" not in f], failures
    context.close()
