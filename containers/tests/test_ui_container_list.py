"""The container list in headless Chromium: filters and search, bulk actions on real containers,
sparklines with history from page load, update-available arriving live."""

from __future__ import annotations

import pytest

from containers import stats
from containers.choices import TagSource
from containers.models import Container, ContainerTag, Tag
from containers.tests.browser import LOOP, live, login, row
from testkit.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HEALTHY = ("--health-cmd", "true", "--health-interval", "1s", "--health-retries", "1")
UNHEALTHY = ("--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1")


def _shown(page, key) -> bool:
    return row(page, key).count() == 1 and row(page, key).is_visible()


def _wait_rows(page, present=(), absent=()):
    """Wait until exactly these of our rows are drawn (others' containers may share the engines)."""
    script = """([present, absent]) => present.every(k => document.querySelector('tr[data-key="' + k + '"]')) &&
                                     absent.every(k => !document.querySelector('tr[data-key="' + k + '"]'))"""
    page.wait_for_function(script, arg=[list(present), list(absent)], timeout=5_000)


def test_filters_and_search(browser, admin, make_host, alpha, beta, monitor, daphne, run_container, unique, testbed):
    from updates import lookups
    from updates import services as updates

    host_a, host_b = make_host(alpha, name=f"fa-{unique}"), make_host(beta, name=f"fb-{unique}")
    ref = testbed.image_ref(f"ui-{unique}/app", "1.0")
    testbed.build_image("alpha", ref, "one")
    testbed.push("alpha", ref)
    try:
        a = run_container(alpha, f"flt-a-{unique}", *LOOP, extra=HEALTHY)
        b = run_container(beta, f"flt-b-{unique}", *LOOP, extra=UNHEALTHY)
        c = run_container(alpha, f"flt-c-{unique}", *LOOP, image=ref)
        monitor()
        ka, kb, kc = f"{host_a.pk}:{a[:12]}", f"{host_b.pk}:{b[:12]}", f"{host_a.pk}:{c[:12]}"
        wait_for(lambda: Container.objects.filter(pk=ka, health="healthy").exists() and Container.objects.filter(pk=kb, health="unhealthy").exists()
                 and Container.objects.filter(pk=kc).exists(), message="sync with health", timeout=30)
        tag = Tag.objects.create(name=f"team-{unique}")
        ContainerTag.objects.create(container_id=ka, tag=tag, source=TagSource.USER)
        lookups.clear_cache()
        updates.check(container_keys=[kc], force=True)  # up to date: nothing to show yet

        page, base = login(browser, daphne, "boss", "pw-boss-12345")
        page.goto(f"{base}/containers/")
        live(page)
        ours = (ka, kb, kc)
        # Search (name, image, id) narrows to our three.
        page.fill("#f-search", unique)
        _wait_rows(page, present=ours)
        assert page.inner_text("#count").startswith("3 of ")
        page.fill("#f-search", c[:12])  # by id
        _wait_rows(page, present=[kc], absent=[ka, kb])
        page.fill("#f-search", unique)
        _wait_rows(page, present=ours)
        # Host
        page.select_option("#f-host", str(host_b.pk))
        _wait_rows(page, present=[kb], absent=[ka, kc])
        page.select_option("#f-host", "")
        # Tag
        page.select_option("#f-tag", f"team-{unique}")
        _wait_rows(page, present=[ka], absent=[kb, kc])
        page.select_option("#f-tag", "")
        # Health
        page.select_option("#f-health", "healthy")
        _wait_rows(page, present=[ka], absent=[kb, kc])
        page.select_option("#f-health", "unhealthy")
        _wait_rows(page, present=[kb], absent=[ka, kc])
        page.select_option("#f-health", "")
        # Update available: none yet; a new release pushed and checked arrives live (update.available).
        page.check("#f-update")
        _wait_rows(page, absent=ours)
        assert page.locator("#containers tr.empty").count() == 1
        testbed.build_image("beta", ref, "two")
        testbed.push("beta", ref)
        lookups.clear_cache()
        updates.check(container_keys=[kc], force=True)
        _wait_rows(page, present=[kc], absent=[ka, kb])
        assert row(page, kc).locator(".badge.update").count() == 1
        page.uncheck("#f-update")
        _wait_rows(page, present=ours)
        # Filters in the address bar (links from the dashboard) apply on load.
        page.goto(f"{base}/containers/?health=unhealthy&search={unique}")
        _wait_rows(page, present=[kb], absent=[ka, kc])
        page.context.close()
    finally:
        testbed.engines["alpha"].docker("rmi", "-f", ref, check=False)
        testbed.engines["beta"].docker("rmi", "-f", ref, check=False)


def test_bulk_stop_of_two_selected_containers(browser, admin, make_host, alpha, monitor, daphne, run_container, unique):
    host = make_host(alpha)
    ids = [run_container(alpha, f"bulk-{i}-{unique}", *LOOP) for i in range(3)]
    monitor()
    keys = [f"{host.pk}:{cid[:12]}" for cid in ids]
    wait_for(lambda: Container.objects.filter(pk__in=keys, state="running").count() == 3, message="sync", timeout=30)
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/?search={unique}")
    live(page)
    _wait_rows(page, present=keys)
    for key in keys[:2]:
        row(page, key).locator("input.sel").check()
    assert page.inner_text("#selected-count") == "2 selected"
    page.select_option("#bulk-action", "stop")
    page.click("#bulk-go")
    page.wait_for_selector("#confirm-dialog[open]")
    assert "2 container(s)" in page.inner_text("#confirm-title")
    page.click("#confirm-ok")
    page.wait_for_selector(".toast.ok >> text=stop: 2 done", timeout=30_000)
    for cid in ids[:2]:
        assert alpha.docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "exited"
    assert alpha.docker("inspect", "-f", "{{.State.Status}}", ids[2]).stdout.strip() == "running"
    for key in keys[:2]:
        page.wait_for_selector(f'tr[data-key="{key}"] .badge.state.exited', timeout=5_000)
    # Cancelling the confirmation does nothing.
    row(page, keys[2]).locator("input.sel").check()
    page.click("#bulk-go")
    page.click("#confirm-dialog #confirm-cancel")
    page.wait_for_selector("#confirm-dialog", state="hidden")
    assert alpha.docker("inspect", "-f", "{{.State.Status}}", ids[2]).stdout.strip() == "running"
    page.context.close()


def test_bulk_on_a_large_selection_follows_the_background_job(browser, admin, make_host, alpha, monitor, run_container, unique, monkeypatch):
    """Above DOCKMON_BULK_INLINE_MAX the API answers 202 with a job that a worker runs: the page
    follows it (live bulk.item / bulk.finished, and the job endpoint) and reports every item."""
    import sys

    from testkit import testing

    queue = f"uibulk{unique}"
    monkeypatch.setenv("DOCKMON_BULK_INLINE_MAX", "1")
    monkeypatch.setenv("DOCKMON_BULK_QUEUE", queue)
    host = make_host(alpha)
    ids = [run_container(alpha, f"bg-{i}-{unique}", *LOOP) for i in range(3)]
    monitor()
    keys = [f"{host.pk}:{cid[:12]}" for cid in ids]
    wait_for(lambda: Container.objects.filter(pk__in=keys, state="running").count() == 3, message="sync", timeout=30)
    port = testing.free_port()
    daphne = testing.start_daphne(port)
    daphne.port = port
    argv = [sys.executable, "-m", "celery", "-A", "dockmon_site", "worker", "-Q", queue, "-c", "1", "-l", "info",
            "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"{queue}@%h"]
    worker = testing.ManagedProcess("ui-bulk-worker", argv, testing.subprocess_env(), testing.log_dir()).start()
    try:
        page, base = login(browser, daphne, "boss", "pw-boss-12345")
        answers = []
        page.on("response", lambda r: answers.append(r.status) if r.url.endswith("/api/v1/containers/bulk/") else None)
        page.goto(f"{base}/containers/?search={unique}")
        live(page)
        _wait_rows(page, present=keys)
        page.check("#select-all")
        assert page.inner_text("#selected-count") == "3 selected"
        page.select_option("#bulk-action", "stop")
        page.click("#bulk-go")
        page.click("#confirm-ok")
        page.wait_for_selector(".toast.ok >> text=stop: 3 done", timeout=60_000)
        assert answers == [202]
        assert set(_states(alpha, ids).values()) == {"exited"}
        for key in keys:
            page.wait_for_selector(f'tr[data-key="{key}"] .badge.state.exited', timeout=5_000)
        assert page.inner_text("#bulk-progress") == ""
        page.context.close()
    finally:
        worker.stop()
        daphne.stop()


def _states(engine, ids):
    return {cid: engine.docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() for cid in ids}


def test_sparklines_have_history_at_page_load_and_values_stay_on_one_line(
    browser, admin, make_host, alpha, monitor, daphne, run_container, unique
):
    host = make_host(alpha)
    cid = run_container(alpha, f"spark-{unique}", *LOOP)
    idle = run_container(alpha, f"spark-idle-{unique}", "sh", "-c", "exit 0")
    monitor()
    key, idle_key = f"{host.pk}:{cid[:12]}", f"{host.pk}:{idle[:12]}"
    wait_for(lambda: Container.objects.filter(pk=key, state="running").exists() and Container.objects.filter(pk=idle_key, state="exited").exists(),
             message="sync", timeout=30)
    for _ in range(3):  # three stats cycles before the page opens
        stats.collect_host(host.pk)
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/?search={unique}")
    live(page)
    page.wait_for_selector(f'tr[data-key="{key}"] svg.spark.cpu:not(.empty) polyline', state="attached", timeout=5_000)
    assert row(page, key).locator("svg.spark.mem:not(.empty)").count() == 1
    # A container without stats has no (empty) sparkline taking room.
    assert row(page, idle_key).locator("svg.spark.empty").count() == 2
    assert not row(page, idle_key).locator("svg.spark.cpu").is_visible()
    # The value and its sparkline share one line, level with the rest of the row.
    value = row(page, key).locator(".cpu-val").bounding_box()
    spark = row(page, key).locator("svg.spark.cpu").bounding_box()
    name = row(page, key).locator("a.name").bounding_box()
    assert abs((value["y"] + value["height"] / 2) - (spark["y"] + spark["height"] / 2)) < 4
    assert abs((value["y"] + value["height"] / 2) - (name["y"] + name["height"] / 2)) < 6
    assert spark["x"] > value["x"]
    assert row(page, key).bounding_box()["height"] == pytest.approx(row(page, idle_key).bounding_box()["height"], abs=2)
    # A live sample extends the line.
    before = row(page, key).locator("svg.spark.cpu polyline").get_attribute("points").count(" ")
    stats.collect_host(host.pk)
    page.wait_for_function(
        f"""() => document.querySelector('tr[data-key="{key}"] svg.spark.cpu polyline').getAttribute('points').split(' ').length > {before + 1}""",
        timeout=5_000,
    )
    page.context.close()
