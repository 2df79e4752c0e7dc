"""The container page in headless Chromium: stats ranges, logs (filter, download), the live
profiler and its saved sessions, settings, remove with its options. Real engines throughout."""

from __future__ import annotations

import json

import pytest
from guardian.shortcuts import assign_perm

from containers import stats
from containers.models import Container, ProfileSession
from containers.tests.browser import BURN, LOOP, live, login
from testkit.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def running(admin, make_host, alpha, run_container, sync_container, unique):
    """One running container on alpha, in the database (no monitor needed for these pages)."""
    host = make_host(alpha, status="online")  # as the monitor would have it: stats cycles run

    def start(*cmd, name=None, extra=()):
        name = name or f"det-{unique}"
        row = sync_container(host, run_container(alpha, name, *(cmd or LOOP), extra=extra))
        return row, name

    return start


def test_range_buttons_ask_the_stats_api_for_their_range(browser, running, daphne):
    row, _ = running()
    for _ in range(2):
        stats.collect_host(row.host_id)
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    with page.expect_request(lambda r: r.url.endswith(f"/api/v1/containers/{row.key}/stats/?range=1h")):
        page.goto(f"{base}/containers/{row.key}/")
    page.wait_for_function("() => Number(document.getElementById('chart-cpu').dataset.points) >= 2")
    for name in ("24h", "7d", "30d", "1h"):
        with page.expect_response(lambda r, name=name: r.url.endswith(f"/api/v1/containers/{row.key}/stats/?range={name}")) as answer:
            page.click(f'#content [data-range="{name}"]')
        assert answer.value.status == 200 and json.loads(answer.value.text())["range"] == name
        assert page.get_attribute(f'[data-range="{name}"]', "aria-pressed") == "true"
        assert page.locator('[data-range][aria-pressed="true"]').count() == 1
    # The CPU axis of a near-idle container reads in tenths or hundredths, never "0 %" at the top.
    labels = page.locator("#chart-cpu text.axis").all_text_contents()
    assert labels[0] == "0 %" and all(label != "0 %" for label in labels[1:3]), labels
    page.context.close()


def test_logs_filter_search_and_download(browser, running, daphne):
    script = 'echo apple-one; echo banana-two; echo apple-three >&2; trap "exit 0" TERM; while true; do sleep 1; done'
    row, name = running("sh", "-c", script)
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/{row.key}/")
    page.wait_for_selector("#logs >> text=banana-two")
    page.fill("#log-search", "APPLE")
    page.wait_for_selector("#logs div.hidden >> text=banana-two", state="attached")
    assert page.locator("#logs div:not(.hidden)").count() == 2
    assert page.inner_text("#log-count") == "2 of 3 lines"
    assert page.locator("#logs div.stderr:not(.hidden) >> text=apple-three").count() == 1
    page.fill("#log-search", "")
    page.wait_for_function("() => document.querySelectorAll('#logs div.hidden').length === 0")
    with page.expect_download() as download:
        page.click("#log-download")
    assert download.value.suggested_filename == f"{name}.log"
    text = open(download.value.path()).read()
    assert "stdout apple-one" in text and "stdout banana-two" in text and "stderr apple-three" in text
    page.context.close()


def test_profiler_start_stop_replay_and_export(browser, running, daphne):
    row, _ = running(*BURN)
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/{row.key}/")
    live(page)
    page.wait_for_selector("#profile-sessions >> text=No saved sessions yet")
    page.click("#profile-start")
    page.wait_for_function("() => Number(document.getElementById('profile-cpu').dataset.points) >= 3", timeout=20_000)
    assert page.get_attribute("#profiler", "data-showing") == "live"
    page.click("#profile-stop")
    page.wait_for_selector("#profile-info >> text=Saved session", timeout=10_000)
    session = ProfileSession.objects.get(container_key=row.key)
    assert session.ended_at is not None and session.end_reason == "stopped" and session.sample_count >= 3
    # The saved session is listed; replay draws its samples; CSV and JSON export them.
    tr = page.locator(f'#profile-sessions tr[data-session="{session.pk}"]')
    tr.wait_for()
    assert tr.locator("td").nth(2).inner_text() == str(session.sample_count)
    page.evaluate("() => { document.getElementById('profile-cpu').dataset.points = '0'; }")
    tr.locator("button.replay").click()
    page.wait_for_function(f"() => document.getElementById('profiler').dataset.showing === 'session {session.pk}'")
    assert page.get_attribute("#profile-cpu", "data-points") == str(session.sample_count)
    cpu_top = page.locator("#profile-cpu text.axis").nth(2).text_content()
    busiest = max(sample[1] for sample in session.samples)  # [t, cpu_percent, mem_bytes, ...]
    assert busiest > 0 and busiest <= float(cpu_top.split()[0]) < 2.5 * busiest + 1, (cpu_top, busiest)  # the axis fits the samples
    csv = page.request.get(base + tr.locator("a.csv").get_attribute("href"))
    lines = csv.text().strip().splitlines()
    assert csv.ok and lines[0].startswith("t,cpu_percent,mem_bytes") and len(lines) == session.sample_count + 1
    exported = page.request.get(base + tr.locator("a.json").get_attribute("href"))
    assert exported.ok and "attachment" in exported.headers.get("content-disposition", "")
    page.context.close()


def test_settings_are_read_saved_and_permission_aware(browser, running, daphne, django_user_model):
    from healthchecks.models import AutoRestartConfig
    from updates.models import AutoUpdate, UpdatePolicy

    row, _ = running()
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/{row.key}/")
    page.wait_for_selector("#settings-form[data-loaded]")
    assert not page.is_checked("#auto-restart") and not page.is_checked("#auto-update")
    page.fill("#tags-input", "web, prod-eu")
    page.select_option("#desired", "running")
    page.select_option("#update-policy", "block")
    page.check("#auto-restart")
    page.check("#auto-update")
    page.click("#settings-save")
    page.wait_for_selector("#settings-info >> text=Saved.")
    assert UpdatePolicy.objects.get(container_id=row.key).policy == "block"
    assert AutoRestartConfig.objects.get(container_id=row.key).enabled is True
    assert AutoUpdate.objects.get(container_id=row.key).enabled is True
    row.refresh_from_db()
    assert row.desired_state == "running" and sorted(t.name for t in row.tags.all()) == ["prod-eu", "web"]
    assert page.locator("#tags .badge.tag").all_inner_texts() == ["prod-eu", "web"]

    # What was saved is what the page reads next time; "inherit" removes the container's own policy.
    page.reload()
    page.wait_for_selector("#settings-form[data-loaded]")
    assert page.is_checked("#auto-restart")
    assert page.input_value("#update-policy") == "block" and page.is_checked("#auto-update")
    assert page.input_value("#desired") == "running"
    page.select_option("#update-policy", "")
    page.uncheck("#auto-restart")
    page.click("#settings-save")
    page.wait_for_selector("#settings-info >> text=Saved.")
    assert not UpdatePolicy.objects.filter(container_id=row.key).exists()
    assert AutoRestartConfig.objects.get(container_id=row.key).enabled is False
    page.context.close()

    # A viewer sees the settings but cannot change them; a user with update rights only may
    # switch auto-update and nothing else.
    viewer = django_user_model.objects.create_user("det-viewer", password="pw-viewer-12345")
    assign_perm("containers.view_container", viewer, row)
    page, base = login(browser, daphne, "det-viewer", "pw-viewer-12345")
    page.goto(f"{base}/containers/{row.key}/")
    page.wait_for_selector("#settings-form[data-loaded]")
    assert page.locator("#settings-save").count() == 0
    assert page.is_disabled("#tags-input") and page.is_disabled("#update-policy") and page.is_disabled("#auto-update")
    assert page.is_checked("#auto-update")
    page.context.close()
    updater = django_user_model.objects.create_user("det-updater", password="pw-updater-12345")
    assign_perm("containers.view_container", updater, row)
    assign_perm("containers.update_container", updater, row)
    page, base = login(browser, daphne, "det-updater", "pw-updater-12345")
    page.goto(f"{base}/containers/{row.key}/")
    page.wait_for_selector("#settings-form[data-loaded]")
    assert page.is_checked("#auto-update")
    assert page.is_disabled("#auto-restart") and not page.is_disabled("#auto-update")
    page.uncheck("#auto-update")
    page.click("#settings-save")
    page.wait_for_selector("#settings-info >> text=Saved.")
    assert AutoUpdate.objects.get(container_id=row.key).enabled is False
    page.context.close()


def test_remove_asks_first_and_can_take_the_volumes(browser, running, daphne, alpha):
    row, name = running(extra=("-v", "/data"))
    volume = alpha.docker("inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", name).stdout.strip()
    assert volume
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/{row.key}/")
    live(page)
    page.click('#actions [data-op="remove"]')
    page.wait_for_selector("#confirm-dialog[open]")
    assert page.is_checked("#confirm-dialog input[name=force]")  # it is running
    assert not page.is_checked("#confirm-dialog input[name=volumes]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#confirm-dialog", state="hidden")
    assert alpha.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "running"

    page.click('#actions [data-op="remove"]')
    page.check("#confirm-dialog input[name=volumes]")
    page.click("#confirm-ok")
    page.wait_for_url(f"{base}/containers/")
    assert alpha.docker("inspect", name, check=False).returncode != 0
    assert alpha.docker("volume", "inspect", volume, check=False).returncode != 0
    wait_for(lambda: Container.objects.get(pk=row.key).removed_at is not None, message="marked removed")
    page.context.close()
