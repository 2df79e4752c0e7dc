"""The browser UI in headless Chromium against daphne, the monitor and real engines."""

from __future__ import annotations

import time

import pytest
from guardian.shortcuts import assign_perm

from containers.models import Container, DockerHost
from containers.tests.browser import LOOP, SCREENSHOTS
from containers.tests.browser import live as _live
from containers.tests.browser import login as _login
from containers.tests.browser import row as _row
from testkit.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_container_list_and_detail_are_live(browser, admin, make_host, alpha, monitor, daphne, run_container, unique):
    host = make_host(alpha)
    name = f"ui-{unique}"
    cid = run_container(alpha, name, *LOOP)
    monitor()
    key = f"{host.pk}:{cid[:12]}"
    wait_for(lambda: Container.objects.filter(pk=key).exists(), message="monitor sync", timeout=30)
    page, base = _login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/")
    _live(page)
    assert _row(page, key).locator(".badge.state").inner_text() == "running"

    # A docker CLI stop shows on the open page within 2 s, without a reload.
    alpha.docker("stop", "-t", "0", name)
    page.wait_for_selector(f'tr[data-key="{key}"] .badge.state.exited', timeout=2_000)
    # A new container appears; a removed one disappears.
    new_id = run_container(alpha, f"{name}-new", *LOOP)
    new_key = f"{host.pk}:{new_id[:12]}"
    page.wait_for_selector(f'tr[data-key="{new_key}"]', timeout=2_000)
    alpha.docker("rm", "-f", f"{name}-new")
    page.wait_for_selector(f'tr[data-key="{new_key}"]', state="detached", timeout=2_000)

    # Client-side filters.
    page.select_option("#f-state", "running")
    page.wait_for_selector(f'tr[data-key="{key}"]', state="hidden", timeout=2_000)
    page.select_option("#f-state", "exited")
    page.wait_for_selector(f'tr[data-key="{key}"]', state="visible", timeout=2_000)
    page.select_option("#f-state", "")

    # Restart from the detail page restarts the real container.
    alpha.docker("start", name)
    page.wait_for_selector(f'tr[data-key="{key}"] .badge.state.running', timeout=5_000)
    before = alpha.docker("inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip()
    page.click(f'tr[data-key="{key}"] a.name')
    page.wait_for_url(f"{base}/containers/{key}/")
    _live(page)
    page.click('#actions [data-op="restart"]')
    page.click("#confirm-dialog #confirm-ok")
    wait_for(lambda: alpha.docker("inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip() != before, timeout=15, message="restart")
    page.wait_for_selector("#state.running")
    page.context.close()


def test_log_follow_shows_a_line_printed_after_the_page_opened(browser, admin, make_host, alpha, monitor, daphne, run_container, unique, sync_container):
    host = make_host(alpha)
    name = f"logui-{unique}"
    marker = f"/tmp/go-{unique}"
    script = f'trap "exit 0" TERM; while [ ! -e {marker} ]; do sleep 0.2; done; echo "hello-after-open-{unique}"; while true; do sleep 1; done'
    cid = run_container(alpha, name, "sh", "-c", script)
    row = sync_container(host, cid)
    monitor()
    page, base = _login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/containers/{row.key}/")
    _live(page)
    page.check("#follow")
    time.sleep(0.5)
    alpha.docker("exec", name, "sh", "-c", f"touch {marker}")
    page.wait_for_selector(f"#logs >> text=hello-after-open-{unique}", timeout=10_000)
    page.context.close()


def test_a_user_granted_one_host_sees_only_it_and_gets_no_live_updates_about_others(
    browser, django_user_model, make_host, alpha, beta, monitor, daphne, run_container, unique
):
    host_a, host_b = make_host(alpha), make_host(beta)
    user = django_user_model.objects.create_user(f"ui{unique}", password="pw-ui-user-123")
    assign_perm("containers.view_dockerhost", user, host_a)
    a_id = run_container(alpha, f"visible-{unique}", *LOOP)
    b_id = run_container(beta, f"hidden-{unique}", *LOOP)
    monitor()
    wait_for(lambda: Container.objects.filter(pk=f"{host_b.pk}:{b_id[:12]}").exists(), message="sync b", timeout=30)
    wait_for(lambda: Container.objects.filter(pk=f"{host_a.pk}:{a_id[:12]}").exists(), message="sync a", timeout=30)
    page, base = _login(browser, daphne, user.username, "pw-ui-user-123")
    for path in ("/containers/", "/", "/hosts/", "/events/"):
        page.goto(base + path)
        assert f"hidden-{unique}" not in page.content() and host_b.name not in page.content(), path
    page.goto(f"{base}/containers/")
    _live(page)
    assert _row(page, f"{host_a.pk}:{a_id[:12]}").count() == 1
    late_b = run_container(beta, f"hidden2-{unique}", *LOOP)
    late_a = run_container(alpha, f"visible2-{unique}", *LOOP)
    page.wait_for_selector(f'tr[data-key="{host_a.pk}:{late_a[:12]}"]', timeout=5_000)
    assert _row(page, f"{host_b.pk}:{late_b[:12]}").count() == 0
    assert page.goto(f"{base}/containers/{host_b.pk}:{b_id[:12]}/").status == 404
    assert page.goto(f"{base}/hosts/{host_b.pk}/").status == 404
    page.context.close()


def test_screenshots_light_and_dark(browser, admin, make_host, alpha, beta, monitor, daphne, run_container, unique):
    """Produces the screenshots people look at: dashboard, container list, container detail."""
    host = make_host(alpha, name="alpha")
    make_host(beta, name="beta-tls", via="tls")
    chatty = ["sh", "-c", 'trap "exit 0" TERM; i=0; while true; do echo "request $i served in 3ms"; i=$((i+1)); sleep 1; done']
    ids = [run_container(alpha, f"web-{i}-{unique}", *chatty) for i in range(3)]
    run_container(alpha, f"busy-{unique}", "sh", "-c", "while true; do :; done")
    run_container(alpha, f"job-{unique}", "sh", "-c", "echo done; exit 3")
    monitor()
    key = f"{host.pk}:{ids[0][:12]}"
    wait_for(lambda: Container.objects.filter(pk=key).exists(), message="sync", timeout=30)
    wait_for(lambda: DockerHost.objects.filter(status="online").count() >= 2, message="hosts online", timeout=30)
    from containers import stats

    for _ in range(3):  # a few stats cycles, so charts and sparklines have something to draw
        stats.collect_host(host.pk)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for dark in (False, True):
        page, base = _login(browser, daphne, "boss", "pw-boss-12345", dark=dark)
        suffix = "dark" if dark else "light"
        for name, path in (("dashboard", "/"), ("containers", "/containers/"), ("container", f"/containers/{key}/")):
            page.goto(base + path)
            _live(page)
            page.wait_for_timeout(600)
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{suffix}.png"), full_page=True)
            assert (SCREENSHOTS / f"{name}-{suffix}.png").stat().st_size > 10_000
        page.context.close()


def test_health_checks_page_tests_a_real_endpoint_and_shows_status_changes_live(
    browser, admin, make_host, alpha, daphne, run_container, sync_container, unique
):
    from containers import bus
    from healthchecks.models import HealthCheck
    from testkit.testing import free_port

    host = make_host(alpha)
    port = free_port()
    serve = f"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
    row = sync_container(host, run_container(alpha, f"web-{unique}", "sh", "-c", serve, network="host"))
    check = HealthCheck.objects.create(container=row, name=f"home-{unique}", url=f"http://127.0.0.1:{port}/", interval_seconds=30)
    page, base = _login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/health/")
    _live(page)
    page.wait_for_selector(f'tr[data-id="{check.pk}"]')
    page.click(f'tr[data-id="{check.pk}"] button.test')
    page.wait_for_selector(".toast >> text=OK: 200")
    # A status change arrives over the WebSocket and shows without a reload.
    bus.emit("health.status", category="health", host=host.pk, container=row, message="unhealthy",
             data={"key": row.key, "check": check.pk, "status": "unhealthy", "previous": "unknown", "response_ms": 7})
    page.wait_for_selector(f'tr[data-id="{check.pk}"] .badge.status.unhealthy', timeout=5_000)
    page.click(f'tr[data-id="{check.pk}"] a.open')
    page.wait_for_selector("#detail-summary >> text=checks")
    page.context.close()


def test_alerts_page_creates_rules_and_shows_alerts_live(browser, admin, make_host, alpha, daphne, unique):
    from alerts.models import Alert, AlertRule
    from containers import bus

    host = make_host(alpha)
    row = Container.objects.create(host=host, short_id="abcabcabcabc", container_id="abcabcabcabc" + "0" * 52, name=f"db-{unique}", state="exited")
    page, base = _login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/alerts/")
    _live(page)
    page.click("#rule-panel summary")
    page.fill("#rule-form [name=name]", f"stopped-{unique}")
    page.select_option("#rule-form [name=kind]", "container_stopped")
    page.click("#rule-form button[type=submit]")
    page.wait_for_selector(f"#rules-table >> text=stopped-{unique}")
    rule = AlertRule.objects.get(name=f"stopped-{unique}")
    assert rule.kind == "container_stopped" and rule.enabled
    # An alert that fires while the page is open appears without a reload; Ack changes it in place.
    alert = Alert.objects.create(rule=rule, kind="container_stopped", dedup_key=f"{rule.pk}|container_stopped|container:{row.key}",
                                 scope_type="container", scope_id=row.key, host=host, container=row, subject_name=row.name,
                                 title=f"{row.name} stopped", message="exit code 1")
    bus.emit("alert.fired", category="alert", host=host.pk, container=row, message=alert.title,
             data={"alert": alert.pk, "rule": rule.pk, "kind": alert.kind, "state": "open", "title": alert.title})
    page.wait_for_selector(f'tr[data-alert="{alert.pk}"] >> text={row.name} stopped', timeout=5_000)
    page.click(f'tr[data-alert="{alert.pk}"] button[data-act="acknowledge"]')
    page.wait_for_selector(f'tr[data-alert="{alert.pk}"] .badge.acknowledged', timeout=5_000)
    assert Alert.objects.get(pk=alert.pk).state == "acknowledged"
    page.context.close()
