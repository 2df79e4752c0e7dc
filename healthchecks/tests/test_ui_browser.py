"""The Health checks page in headless Chromium against daphne and a real engine: every setting
of a check through the form, edit and delete, the response-time chart, and the container's own
Docker HEALTHCHECK beside DockMon's check."""

from __future__ import annotations

import json

import pytest

from containers.tests.browser import SCREENSHOTS, browser, live, login  # noqa: F401 (browser: a fixture)
from healthchecks.models import CheckResult, HealthCheck
from testkit.testing import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def image_with_healthcheck(testbed, alpha, unique):
    ref = testbed.image_ref(f"hd/hc-ui-{unique}", "1")
    testbed.build_image("alpha", ref, "hc-ui", healthcheck="--interval=1s --timeout=2s --retries=1 CMD true")
    yield ref
    alpha.docker("rmi", "-f", ref, check=False)


def _docker_health(engine, name: str) -> str:
    return engine.docker("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", name).stdout.strip()


def test_checks_are_added_edited_and_deleted_with_every_setting_and_show_their_chart_and_docker_health(
    browser, admin, make_host, alpha, daphne, sync_container, containers_to_remove, image_with_healthcheck, unique  # noqa: F811
):
    host = make_host(alpha)
    port = free_port()
    name = f"hc-ui-{unique}"
    containers_to_remove.append((alpha, name))
    serve = f"mkdir -p /www && echo service-ok > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
    cid = alpha.docker("run", "-d", "--network", "host", "--name", name, image_with_healthcheck, "sh", "-c", serve).stdout.strip()
    wait_for(lambda: _docker_health(alpha, name) == "healthy", timeout=30, message="Docker's own HEALTHCHECK healthy")
    row = sync_container(host, cid)
    assert row.health == "healthy"

    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/health/")
    live(page)
    page.click("#add-panel summary")
    form = "#add-form"
    assert not page.is_visible("#form-cancel") and not page.is_visible("#clear-headers-label")
    page.select_option(f"{form} [name=container]", row.key)
    page.fill(f"{form} [name=name]", f"home-{unique}")
    page.fill(f"{form} [name=url]", f"http://127.0.0.1:{port}/")
    page.fill(f"{form} [name=expected_status]", "200-204")
    page.fill(f"{form} [name=body_keyword]", "service-ok")
    page.fill(f"{form} [name=interval_seconds]", "45")
    page.fill(f"{form} [name=timeout_seconds]", "2")
    page.fill(f"{form} [name=failure_threshold]", "2")
    page.fill(f"{form} [name=success_threshold]", "2")
    page.uncheck(f"{form} [name=follow_redirects]")
    page.uncheck(f"{form} [name=verify_tls]")
    page.fill(f"{form} [name=basic_auth_user]", "probe")
    page.fill(f"{form} [name=basic_auth_password]", "pw-probe-77")
    page.fill(f"{form} [name=headers]", "X-Probe: secret-abc\nX-Env: test")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(".toast >> text=Check added.")
    check = HealthCheck.objects.get(name=f"home-{unique}")
    assert (check.container_id, check.url, check.expected_status, check.body_keyword) == (row.key, f"http://127.0.0.1:{port}/", "200-204",
                                                                                          "service-ok")
    assert (check.interval_seconds, check.timeout_seconds, check.failure_threshold, check.success_threshold) == (45, 2.0, 2, 2)
    assert (check.follow_redirects, check.verify_tls, check.enabled, check.auto_restart) == (False, False, True, False)
    assert check.basic_auth_user == "probe" and check.basic_auth_password == "pw-probe-77"
    assert check.header_dict == {"X-Probe": "secret-abc", "X-Env": "test"}
    assert "secret-abc" not in page.content() and "pw-probe-77" not in page.content()

    # The container's own Docker health beside DockMon's check (which has not run yet).
    tr = f'tr[data-id="{check.pk}"]'
    assert page.inner_text(f"{tr} td.docker-health .badge") == "healthy"
    assert page.inner_text(f"{tr} .badge.status") == "unknown"

    # Three runs, then the chart of their response times.
    for done in (1, 2, 3):
        page.click(f"{tr} button.test")
        wait_for(lambda n=done: CheckResult.objects.filter(health_check=check).count() == n, timeout=20, message=f"run {done}")
    page.wait_for_selector(f"{tr} .badge.status.healthy")
    page.click(f"{tr} a.open")
    page.wait_for_selector('#detail-chart[data-points="3"]')
    assert page.locator("#detail-chart polyline").count() == 1
    assert len(page.get_attribute("#detail-chart polyline", "points").split()) == 3
    assert "3 checks" in page.inner_text("#detail-summary") and "100" in page.inner_text("#detail-summary")
    assert "basic auth as probe" in page.inner_text("#detail-settings") and "X-Env, X-Probe" in page.inner_text("#detail-settings")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "health-checks-form-chart.png"), full_page=True)

    # Edit: the form holds the check's settings; secrets left blank are kept.
    page.click(f"{tr} button.edit")
    assert page.input_value(f"{form} [name=url]") == f"http://127.0.0.1:{port}/"
    assert page.input_value(f"{form} [name=success_threshold]") == "2"
    assert not page.is_checked(f"{form} [name=verify_tls]") and page.is_disabled(f"{form} [name=container]")
    assert page.is_visible("#form-cancel") and page.is_visible("#clear-headers-label")
    assert "X-Env, X-Probe" in page.inner_text("#header-names")
    page.fill(f"{form} [name=url]", "http://169.254.169.254/latest/meta-data/")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("#form-errors >> text=169.254.169.254")
    assert HealthCheck.objects.get(pk=check.pk).url == f"http://127.0.0.1:{port}/"
    page.fill(f"{form} [name=url]", f"http://127.0.0.1:{port}/index.html")
    page.fill(f"{form} [name=expected_status]", "200,204")
    page.check(f"{form} [name=verify_tls]")
    page.uncheck(f"{form} [name=enabled]")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(".toast >> text=Check saved.")
    check.refresh_from_db()
    assert (check.url, check.expected_status, check.verify_tls, check.enabled) == (f"http://127.0.0.1:{port}/index.html", "200,204",
                                                                                   True, False)
    assert check.basic_auth_password == "pw-probe-77" and check.header_dict == {"X-Probe": "secret-abc", "X-Env": "test"}
    page.wait_for_selector(f"{tr} .badge.status >> text=disabled")

    # Delete, after a confirmation.
    page.click(f"{tr} button.delete")
    page.click("#confirm-ok")
    page.wait_for_selector(tr, state="detached")
    assert not HealthCheck.objects.filter(pk=check.pk).exists()
    page.context.close()


def test_a_viewer_gets_no_form_and_no_edit_buttons(browser, make_host, alpha, daphne, django_user_model, unique):  # noqa: F811
    from guardian.shortcuts import assign_perm

    from containers.models import Container

    host = make_host(alpha)
    row = Container.objects.create(host=host, container_id="7" * 64, short_id="7" * 12, name=f"view-{unique}", state="running")
    check = HealthCheck.objects.create(container=row, name=f"viewed-{unique}", url="http://127.0.0.1:9/")
    viewer = django_user_model.objects.create_user(f"viewer{unique}", password="pw-viewer-12345")
    assign_perm("containers.view_dockerhost", viewer, host)
    page, base = login(browser, daphne, viewer.username, "pw-viewer-12345")
    page.goto(f"{base}/health/")
    page.wait_for_selector(f'tr[data-id="{check.pk}"]')
    assert page.locator("#add-form").count() == 0
    assert page.locator(f'tr[data-id="{check.pk}"] button.edit').count() == 0
    assert page.locator(f'tr[data-id="{check.pk}"] button.delete').count() == 0
    assert json.loads(page.text_content("#changeable-keys")) == []
    page.context.close()


@pytest.mark.trust
def test_the_form_shows_the_policys_field_errors_and_offers_post_to_administrators_only(
    browser, make_host, alpha, daphne, django_user_model, unique  # noqa: F811
):
    """GIVEN a user granted `change` on one container WHEN they aim a check at the plain-TCP
    engine through the page THEN the form shows the API's field error on the URL, nothing is
    saved, and POST cannot be picked (administrators only)."""
    from urllib.parse import urlsplit

    from guardian.shortcuts import assign_perm

    from containers.models import Container

    host = make_host(alpha, via="tcp")
    row = Container.objects.create(host=host, container_id="6" * 64, short_id="6" * 12, name=f"form-{unique}", state="running")
    user = django_user_model.objects.create_user(f"granted{unique}", password="pw-granted-12345")
    for perm in ("view", "change"):
        assign_perm(f"containers.{perm}_container", user, row)
    page, base = login(browser, daphne, user.username, "pw-granted-12345")
    page.goto(f"{base}/health/")
    live(page)
    page.click("#add-panel summary")
    assert page.locator("#add-form [name=method] option", has_text="POST").is_disabled()
    port = urlsplit(alpha.tcp_url).port
    page.select_option("#add-form [name=container]", row.key)
    page.fill("#add-form [name=url]", f"http://127.0.0.1:{port}/containers/{'6' * 12}/json")
    page.fill("#add-form [name=body_keyword]", "Env")
    page.click("#add-form button[type=submit]")
    page.wait_for_selector("#form-errors >> text=registered Docker engine")
    assert page.text_content("#form-errors").startswith("url: ")
    assert not HealthCheck.objects.exists()
    page.context.close()
