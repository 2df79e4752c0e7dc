"""The Stacks pages in Chromium: create, deploy with live progress, service states."""

from __future__ import annotations

import sys

import pytest

from containers.tests.browser import SCREENSHOTS, browser, live, login  # noqa: F401
from stacks.models import Stack, StackRun
from stacks.tests.test_deploy import engine_containers, two_services
from testkit import testing


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_create_deploy_and_watch_progress_in_the_browser(browser, testbed, alpha, admin, make_host, unique, compose_projects,  # noqa: F811
                                                        monkeypatch, request):
    """GIVEN daphne and a Celery worker on a queue of its own
    WHEN a stack is created on the Stacks page and deployed from its page
    THEN the run log fills in live (stages and services as compose reports them), the run ends
    succeeded and both services show running, without a reload."""
    queue = f"dmtest-stacks-{unique}"
    monkeypatch.setenv("DOCKMON_STACK_QUEUE", queue)  # daphne (started below) queues runs here
    daphne = request.getfixturevalue("daphne")
    host = make_host(alpha, name=f"ui-{unique}")
    name = f"ui{unique}"
    compose_projects.append((alpha, name))
    worker = testing.ManagedProcess(
        "celery-worker",
        [sys.executable, "-m", "celery", "-A", "dockmon_site", "worker", "-Q", queue, "-c", "1", "-l", "info",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"{queue}@%h"],
        testing.subprocess_env(), testing.log_dir(),
    ).start()
    try:
        page, base = login(browser, daphne, "boss", "pw-boss-12345")
        page.goto(f"{base}/stacks/")
        live(page)
        page.select_option("#new-stack select[name=host]", str(host.pk))
        page.fill("#new-stack input[name=name]", name)
        page.fill("#new-stack textarea[name=compose]", two_services(testbed.seed_image))
        page.click("#new-stack button[type=submit]")
        page.wait_for_url(f"{base}/stacks/*/")
        stack = Stack.objects.get(host=host, name=name)
        assert page.url.endswith(f"/stacks/{stack.pk}/")
        live(page)
        assert page.inner_text("#stack-status") == "stopped"
        # The compose editor numbers its lines.
        assert page.inner_text("#edit-stack .editor .gutter").split("\n")[:3] == ["1", "2", "3"]

        page.click("#show-diff")
        page.wait_for_selector("#diff-panel:not([hidden]) tbody tr")
        assert page.locator("#diff tbody tr").count() == 2

        page.click('#actions [data-action="deploy"]')
        # Live progress: compose's own lines per service reach the log while the run goes on.
        page.wait_for_function(f"() => document.getElementById('run-log').textContent.includes('[up] Container {name}-web-1')",
                               timeout=60_000)
        page.wait_for_selector("#runs .badge.succeeded", timeout=60_000)
        page.wait_for_selector('#services tr[data-service="web"] .badge.running', timeout=15_000)
        page.wait_for_selector('#services tr[data-service="db"] .badge.running', timeout=15_000)
        page.wait_for_function("() => document.getElementById('stack-status').textContent === 'running'", timeout=15_000)
        log = page.inner_text("#run-log")
        assert "[pull]" in log and f"[up] Container {name}-db-1: Started" in log, log
        run = StackRun.objects.get(stack=stack)
        assert run.status == "succeeded", run.log
        assert set(engine_containers(alpha, name)) == {"db", "web"}
        # Each service links to its container's page.
        assert page.locator('#services tr[data-service="web"] a[href*="/containers/"]').count() == 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "stack-deployed.png"), full_page=True)

        # Saving an edit (with automatic updates on) shows what a deploy would change.
        page.fill("#edit-stack textarea[name=compose]", two_services(testbed.seed_image, db_command='["sleep", "3601"]'))
        page.check("#edit-stack input[name=auto_update]")
        page.click("#edit-stack button[type=submit]")
        page.wait_for_selector("#diff tbody tr .badge.update")
        assert page.inner_text("#diff tbody").count("config") == 1
        stack.refresh_from_db()
        assert stack.auto_update and "3601" in stack.compose
        # A refused text shows compose's own message.
        page.fill("#edit-stack textarea[name=compose]", "services:\n  app: [\n")
        page.click("#edit-stack button[type=submit]")
        page.wait_for_selector("#edit-error:not([hidden])")
        assert "line" in page.inner_text("#edit-error")

        page.goto(f"{base}/stacks/")
        assert page.locator(f'#stacks tr[data-stack="{stack.pk}"] .status .badge.running').count() == 1
        page.screenshot(path=str(SCREENSHOTS / "stacks-list.png"), full_page=True)
        page.context.close()
    finally:
        worker.stop()  # a warm shutdown: the worker closes its database connection
