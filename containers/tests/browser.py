"""What the browser tests share: headless Debian Chromium through Playwright, logging in, waiting
for the live socket, the screenshot folder. Tests wait on DOM conditions, never on time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit.testing import sign_in

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]
LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']
BURN = ["sh", "-c", 'trap "exit 0" TERM; while true; do :; done']
SCREENSHOTS = Path(os.environ.get("DOCKMON_SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"))
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is required for the UI tests (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test itself
    # are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        instance.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def login(browser, daphne, username, password, dark=False, viewport=None, **context_options):
    context = browser.new_context(color_scheme="dark" if dark else "light", viewport=viewport or {"width": 1280, "height": 900},
                                  **context_options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    base = f"http://127.0.0.1:{daphne.port}"
    sign_in(page, base, username, password)
    return page, base


def live(page):
    page.wait_for_selector("#live-dot.on", timeout=10_000)


def row(page, key):
    return page.locator(f'tr[data-key="{key}"]')


def wait_stats_subscribed(page):
    """The page's stats.subscribe has been answered (so a stats cycle from now reaches it)."""
    page.wait_for_function("() => window.__subscribed === true", timeout=10_000)


# Added to a context before any page script: notes the server's stats.subscribed answer.
SUBSCRIBED_PROBE = """
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    if (window.DockMon) window.DockMon.on("stats.subscribed", function () { window.__subscribed = true; });
  });
})();
"""
