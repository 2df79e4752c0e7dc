"""Themes, phone-sized layout and keyboard-only use of the browser UI (headless Chromium)."""

from __future__ import annotations

import pytest

from containers import stats
from containers.models import Container, DockerHost
from containers.tests.browser import BURN, LOOP, PHONE, SCREENSHOTS, live, login
from testkit.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_theme_toggle_switches_and_persists(browser, admin, daphne):
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    assert page.get_attribute("html", "data-theme") == "light"  # follows the system preference at first
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    page.click("#theme-toggle")
    assert page.get_attribute("html", "data-theme") == "dark"
    assert page.get_attribute("#theme-toggle", "aria-pressed") == "true"
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != background
    # Kept across reloads and other pages of the same browser, over the system preference.
    page.reload()
    assert page.get_attribute("html", "data-theme") == "dark"
    other = page.context.new_page()
    other.goto(f"{base}/containers/")
    assert other.get_attribute("html", "data-theme") == "dark"
    other.click("#theme-toggle")
    page.reload()
    assert page.get_attribute("html", "data-theme") == "light"
    page.context.close()


def test_phone_layout_screenshots(browser, admin, make_host, alpha, monitor, daphne, run_container, unique):
    """Dashboard, list and container page at 390×844, light and dark, written with the other
    screenshots. Nothing may push the page wider than the phone (tables scroll in their panels)."""
    host = make_host(alpha, name="alpha")
    chatty = ["sh", "-c", 'trap "exit 0" TERM; i=0; while true; do echo "GET /api/items/$i 200 in 3ms"; i=$((i+1)); sleep 1; done']
    ids = [run_container(alpha, f"web-{i}-{unique}", *chatty) for i in range(2)]
    run_container(alpha, f"busy-{unique}", *BURN)
    monitor()
    key = f"{host.pk}:{ids[0][:12]}"
    wait_for(lambda: Container.objects.filter(pk=key).exists(), message="sync", timeout=30)
    wait_for(lambda: DockerHost.objects.filter(pk=host.pk, status="online").exists(), message="online", timeout=30)
    for _ in range(3):
        stats.collect_host(host.pk)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for dark in (False, True):
        page, base = login(browser, daphne, "boss", "pw-boss-12345", dark=dark, viewport=PHONE, is_mobile=True, has_touch=True)
        suffix = "dark" if dark else "light"
        for name, path in (("dashboard", "/"), ("containers", f"/containers/?search={unique}"), ("container", f"/containers/{key}/")):
            page.goto(base + path)
            live(page)
            if name == "containers":
                page.wait_for_selector(f'tr[data-key="{key}"] svg.spark.cpu:not(.empty)', state="attached")
            if name == "container":
                page.wait_for_function("() => document.getElementById('chart-cpu').dataset.points !== undefined")
                page.wait_for_selector("#logs >> text=GET /api/items/")
            overflow = page.evaluate("() => document.documentElement.scrollWidth") - PHONE["width"]
            assert overflow <= 0, f"{name}: the page is {overflow}px wider than the phone"
            target = SCREENSHOTS / f"phone-{name}-{suffix}.png"
            page.screenshot(path=str(target), full_page=True)
            assert target.stat().st_size > 10_000
        page.context.close()


def _tab_to(page, predicate: str, limit: int = 60) -> int:
    """Press Tab until document.activeElement matches the JS predicate `el => bool`."""
    for n in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const el = document.activeElement; return !!el && ({predicate})(el); }}"):
            return n
    raise AssertionError(f"no focusable element matching {predicate} within {limit} tabs")


def test_keyboard_only_open_a_container_and_reach_a_confirmation(browser, admin, alpha, daphne, watched_container, unique):
    name = f"kbd-{unique}"
    _, key = watched_container(alpha, name, *LOOP)
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/")
    live(page)
    # The first Tab reaches the skip link, which shows itself when focused.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    assert page.evaluate("() => document.activeElement.getBoundingClientRect().width") > 20
    _tab_to(page, "el => el.id === 'f-search'")
    page.keyboard.type(unique)
    page.wait_for_function(f"""() => document.querySelectorAll('#containers tbody tr[data-key]').length === 1 &&
                                    document.querySelector('tr[data-key="{key}"]')""")
    _tab_to(page, f"el => el.matches('tr[data-key=\"{key}\"] a.name')")
    # The focused link is visibly marked.
    assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/containers/{key}/")
    live(page)
    _tab_to(page, "el => el.dataset && el.dataset.op === 'stop'")
    page.keyboard.press("Enter")
    page.wait_for_selector("#confirm-dialog[open]")
    # The dialog has the focus (on the safe choice), Escape closes it and nothing happened.
    assert page.evaluate("() => document.activeElement.id") == "confirm-cancel"
    page.keyboard.press("Escape")
    page.wait_for_selector("#confirm-dialog", state="hidden")
    assert alpha.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "running"
    # Enter on Restart, Tab to the confirm button, Enter: the real container restarts.
    before = alpha.docker("inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip()
    page.focus('#actions [data-op="restart"]')
    page.keyboard.press("Enter")
    page.wait_for_selector("#confirm-dialog[open]")
    assert page.evaluate("() => document.activeElement.id") == "confirm-ok"
    page.keyboard.press("Enter")
    wait_for(lambda: alpha.docker("inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip() != before, timeout=20, message="restart")
    page.context.close()
