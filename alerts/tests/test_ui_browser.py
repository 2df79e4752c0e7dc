"""The Alerts page in headless Chromium against daphne: maintenance windows created and deleted
from the page, and an alert resolving while the page is open."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from alerts.models import Alert, MaintenanceWindow
from alerts.tests.conftest import make_rule
from containers.models import Container
from containers.tests.browser import SCREENSHOTS, browser, live, login  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
BERLIN = ZoneInfo("Europe/Berlin")


def test_maintenance_windows_are_created_and_deleted_on_the_alerts_page(browser, admin, make_host, alpha, daphne, unique):  # noqa: F811
    host = make_host(alpha)
    page, base = login(browser, daphne, "boss", "pw-boss-12345", timezone_id="Europe/Berlin")
    page.goto(f"{base}/alerts/")
    live(page)
    page.click("#window-panel summary")
    form = "#window-form"
    assert page.is_visible(f"{form} [name=starts_at]") and not page.is_visible(f"{form} [name=start_time]")
    # A one-off window on one host, entered in the browser's own time (Berlin here).
    start = datetime.now(BERLIN).replace(second=0, microsecond=0) - timedelta(minutes=30)
    end = start + timedelta(hours=2)
    page.fill(f"{form} [name=name]", f"patching-{unique}")
    page.select_option(f"{form} [name=target]", f"host:{host.pk}")
    page.fill(f"{form} [name=starts_at]", start.strftime("%Y-%m-%dT%H:%M"))
    page.fill(f"{form} [name=ends_at]", end.strftime("%Y-%m-%dT%H:%M"))
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(f"#windows-table >> text=patching-{unique}")
    once = MaintenanceWindow.objects.get(name=f"patching-{unique}")
    assert once.host_id == host.pk and once.container_id is None and once.recurrence == "once"
    assert once.starts_at == start and once.ends_at == end  # the same instants, stored in UTC
    assert page.inner_text(f'tr[data-window="{once.pk}"]').count("active") == 1

    # A weekly global window; the time zone field starts as the browser's.
    assert page.input_value(f"{form} [name=timezone]") == "Europe/Berlin"
    page.fill(f"{form} [name=name]", f"nightly-{unique}")
    page.select_option(f"{form} [name=recurrence]", "weekly")
    assert page.is_visible(f"{form} [name=start_time]") and not page.is_visible(f"{form} [name=starts_at]")
    page.check(f"{form} input[name=weekdays][value='0']")
    page.check(f"{form} input[name=weekdays][value='2']")
    page.fill(f"{form} [name=start_time]", "22:00")
    page.fill(f"{form} [name=duration_minutes]", "90")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(f"#windows-table >> text=nightly-{unique}")
    weekly = MaintenanceWindow.objects.get(name=f"nightly-{unique}")
    assert (weekly.host_id, weekly.container_id, weekly.weekdays, weekly.start_time.strftime("%H:%M"), weekly.duration_minutes,
            weekly.timezone) == (None, None, [0, 2], "22:00", 90, "Europe/Berlin")
    assert "weekly Mon, Wed at 22:00" in page.inner_text(f'tr[data-window="{weekly.pk}"]')

    # Invalid input is refused with the API's reason, and nothing is stored.
    page.fill(f"{form} [name=name]", f"broken-{unique}")
    page.select_option(f"{form} [name=recurrence]", "once")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(".toast >> text=Not created")
    assert not MaintenanceWindow.objects.filter(name=f"broken-{unique}").exists()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "alerts-maintenance-windows.png"), full_page=True)

    # Deleting asks first; the row and the window are gone.
    page.click(f'tr[data-window="{once.pk}"] button[data-delete-window]')
    page.click("#confirm-ok")
    page.wait_for_selector(f'tr[data-window="{once.pk}"]', state="detached")
    assert not MaintenanceWindow.objects.filter(pk=once.pk).exists()
    page.reload()
    page.wait_for_selector(f'tr[data-window="{weekly.pk}"]')
    assert "weekly Mon, Wed at 22:00 for 90 min (Europe/Berlin)" in page.inner_text(f'tr[data-window="{weekly.pk}"]')
    assert page.locator(f'tr[data-window="{once.pk}"]').count() == 0
    page.context.close()


def test_an_alert_resolving_shows_at_once_on_the_open_page(browser, admin, make_host, alpha, daphne, unique):  # noqa: F811
    from alerts import evaluator

    host = make_host(alpha)
    row = Container.objects.create(host=host, short_id="defdefdefdef", container_id="defdefdefdef" + "0" * 52, name=f"api-{unique}",
                                   state="running")
    rule = make_rule("container_stopped", name=f"stopped-{unique}")
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/alerts/?state=all")
    live(page)
    open_page = page.context.new_page()
    open_page.goto(f"{base}/alerts/")
    open_page.wait_for_selector("#live-dot.on")
    # Fired through the evaluator (the same path as a real stop), shown live on both pages.
    subject = evaluator.container_subject(Container.objects.select_related("host").get(pk=row.pk))
    evaluator.apply(rule, subject, evaluator.BREACH, {"state": "exited", "exit_code": 1}, ts=timezone.now(), event_id=10**9)
    alert = Alert.objects.get(rule=rule)
    page.wait_for_selector(f'tr[data-alert="{alert.pk}"] .badge.open', timeout=5_000)
    open_page.wait_for_selector(f'tr[data-alert="{alert.pk}"]', timeout=5_000)

    evaluator.resolve_by_user(alert, admin)
    page.wait_for_selector(f'tr[data-alert="{alert.pk}"] .badge.resolved', timeout=5_000)
    page.wait_for_selector(".toast >> text=Resolved:", timeout=5_000)
    assert page.locator(f'tr[data-alert="{alert.pk}"] button[data-act]').count() == 0
    # The page of open alerts drops it.
    open_page.wait_for_selector(f'tr[data-alert="{alert.pk}"]', state="detached", timeout=5_000)
    page.context.close()
