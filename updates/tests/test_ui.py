"""The Updates page, the update block of the container page, and their live events."""

from __future__ import annotations

import os
import sys
import uuid

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from accounts.models import APIToken
from containers.models import Container, DockerHost
from testkit import testing
from updates.choices import RunStatus, UpdateStatus
from updates.models import ContainerUpdate, UpdateRun

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


def _container(host, name):
    short = uuid.uuid4().hex[:12]
    c = Container.objects.create(host=host, short_id=short, container_id=short + "0" * 52, name=name,
                                 image="127.0.0.1:5000/demo/app:1.0", state="running")
    ContainerUpdate.objects.create(container=c, status=UpdateStatus.UPDATE_AVAILABLE, update_available=True, image=c.image,
                                   current_version="1.0", latest_version="1.0", latest_digest="sha256:" + "b" * 64)
    return c


@pytest.fixture
def world(django_user_model, seeded_categories):
    host = DockerHost.objects.create(name="ui-upd", url="unix:///nonexistent-ui.sock")
    mine, theirs = _container(host, "ui-mine"), _container(host, "ui-theirs")
    UpdateRun.objects.create(host=host, container=mine, container_name="ui-mine", old_key=mine.key, status=RunStatus.ROLLED_BACK,
                             stage="rollback", error="the HEALTHCHECK did not report healthy")
    UpdateRun.objects.create(host=host, container=theirs, container_name="ui-theirs", old_key=theirs.key, status=RunStatus.SUCCEEDED)
    updater = django_user_model.objects.create_user("ui-updater", password="pw-updater-12")
    outsider = django_user_model.objects.create_user("ui-outsider", password="pw-outsider-1")
    assign_perm("containers.view_container", updater, mine)
    assign_perm("containers.update_container", updater, mine)
    return {"host": host, "mine": mine, "theirs": theirs, "updater": updater, "outsider": outsider}


def _get(user, url):
    client = Client()
    client.force_login(user)
    return client.get(url)


@pytest.mark.django_db
def test_updates_page_per_person(world, admin):
    page = _get(admin, "/updates/").content.decode()
    assert "ui-mine" in page and "ui-theirs" in page and "Check now" in page and "HEALTHCHECK did not report healthy" in page
    page = _get(world["updater"], "/updates/").content.decode()
    assert "ui-mine" in page and "ui-theirs" not in page
    assert f'class="pick" value="{world["mine"].key}"' in page  # may update it: selectable for a bulk update
    page = _get(world["outsider"], "/updates/").content.decode()
    assert "ui-mine" not in page and "No updates available" in page and "No update runs yet" in page
    page = _get(admin, f"/updates/?container={world['theirs'].key}").content.decode()
    assert "ui-theirs" in page and "HEALTHCHECK did not" not in page


@pytest.mark.django_db
def test_container_page_has_the_update_block(world, admin, django_user_model):
    key = world["mine"].key
    page = _get(world["updater"], f"/containers/{key}/").content.decode()
    assert 'id="updates-panel"' in page and 'id="update-btn"' in page and "rolled_back" in page
    viewer = django_user_model.objects.create_user("ui-viewer", password="pw-viewer-123")
    assign_perm("containers.view_container", viewer, world["mine"])
    page = _get(viewer, f"/containers/{key}/").content.decode()
    assert 'id="updates-panel"' in page and 'id="update-btn"' not in page
    assert _get(world["outsider"], f"/containers/{key}/").status_code == 404


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_check_and_update_events_reach_a_user_granted_one_container(world, daphne):
    """Per-container check results and update progress carry the container key, so a user
    granted only that container gets them live (and nobody else's)."""
    from containers import bus

    _, raw = APIToken.issue(world["updater"], name="ws")
    ws = testing.WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/?token={raw}")
    try:
        ws.wait_for(lambda m: m["type"] == "hello", timeout=5)
        from updates.services import _progress_events

        rows = {r.container_id: r for r in ContainerUpdate.objects.all()}
        _progress_events("chk1", [world["theirs"], world["mine"]], rows)
        bus.emit("update.progress", category="update", persist=False, host=world["host"].pk, container=world["mine"].key,
                 data={"run": 1, "key": world["mine"].key, "stage": "pull", "percent": 30})
        got = ws.wait_for(lambda m: m["type"] == "update.check" and m["data"].get("stage") == "container", timeout=10)
        assert got["data"]["key"] == world["mine"].key and got["data"]["update_available"] is True
        progress = ws.wait_for(lambda m: m["type"] == "update.progress", timeout=10)
        assert progress["data"] == {**progress["data"], "run": 1, "stage": "pull", "percent": 30, "key": world["mine"].key}
        ws.drain(0.5)
        assert all(m["data"].get("key") != world["theirs"].key for m in ws.messages)
    finally:
        ws.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_update_button_shows_live_progress_in_the_browser(testbed, alpha, admin, make_host, sync, repo, unique, images_to_remove,
                                                          containers_to_remove, monkeypatch, seeded_categories, request):
    if not os.path.exists("/usr/bin/chromium"):
        pytest.fail("Debian's chromium is required for the UI tests")
    queue = f"dmtest-ui-{unique}"
    monkeypatch.setenv("DOCKMON_UPDATE_QUEUE", queue)  # daphne (started below) queues runs here
    daphne = request.getfixturevalue("daphne")
    ref = testbed.image_ref(repo, "1.0")
    testbed.build_image("alpha", ref, "one", cmd=LOOP)
    images_to_remove.append((alpha, ref))
    testbed.push("alpha", ref)
    name = f"uib-{unique}"
    containers_to_remove.append((alpha, name))
    alpha.docker("run", "-d", "--network", "none", "--name", name, ref)
    host = make_host(alpha)
    sync(host)
    key = Container.objects.get(host=host, name=name).key
    testbed.build_image("beta", ref, "two", cmd=LOOP)
    images_to_remove.append((testbed.engines["beta"], ref))
    testbed.push("beta", ref)
    worker = testing.ManagedProcess(
        "celery-worker",
        [sys.executable, "-m", "celery", "-A", "dockmon_site", "worker", "-Q", queue, "-c", "1", "-l", "info",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"{queue}@%h"],
        testing.subprocess_env(DOCKMON_UPDATE_GRACE_SECONDS="1", DOCKMON_UPDATE_STOP_TIMEOUT="2"), testing.log_dir(),
    ).start()
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page()
            page.set_default_timeout(15_000)
            base = f"http://127.0.0.1:{daphne.port}"
            testing.sign_in(page, base, "boss", "pw-boss-12345")
            page.goto(f"{base}/containers/{key}/")
            page.wait_for_selector("#live-dot.on")
            page.click("#update-btn")
            page.wait_for_selector("#update-progress:not([hidden])")
            page.wait_for_selector("#update-runs .badge.succeeded", timeout=60_000)
            assert int(page.eval_on_selector("#update-bar", "el => el.value")) == 100
            run = UpdateRun.objects.get(old_key=key)
            assert run.status == RunStatus.SUCCEEDED, run.log
            page.goto(f"{base}/updates/")
            assert page.locator(f'#runs tr[data-run="{run.pk}"] .badge.succeeded').count() == 1
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        os.killpg(worker.pid, 9)
        worker.stop()
        for n in alpha.docker("ps", "-a", "--format", "{{.Names}}").stdout.split():
            if n.startswith(f"{name}-dockmon-backup-"):
                alpha.docker("rm", "-f", n, check=False)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_check_now_fills_the_updates_page_in_as_each_image_is_decided(
    testbed, alpha, beta, admin, make_host, sync_container, unique, images_to_remove, containers_to_remove, monkeypatch, request
):
    """GIVEN two containers on two images, a new release of both, and a registry whose answer for
    the second image is held back (a stand-in in front of the real one: fault injection)
    WHEN "Check now" is clicked on the Updates page THEN the first row turns to "Update available"
    and the progress says 1 / 2 while the second is still being asked; once answered, the second
    row follows and the check is reported finished."""
    from pathlib import Path

    from testkit.registry import RegistryStandIn
    from updates import services

    if not os.path.exists("/usr/bin/chromium"):
        pytest.fail("Debian's chromium is required for the UI tests")
    queue = f"dmtest-uichk-{unique}"
    monkeypatch.setenv("DOCKMON_UPDATE_QUEUE", queue)  # daphne (started below) queues the check here
    daphne = request.getfixturevalue("daphne")
    front = RegistryStandIn(testbed.registry, max_hold=60)
    host = make_host(alpha)
    keys, worker = {}, None
    shots = Path(os.environ.get("DOCKMON_SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        for which in ("first", "second"):
            ref = testbed.image_ref(f"upd-{unique}/{which}", "1.0")
            testbed.build_image("alpha", ref, which, cmd=LOOP)
            images_to_remove.append((alpha, ref))
            testbed.push("alpha", ref)
            front_ref = f"{front.addr}/upd-{unique}/{which}:1.0"
            alpha.docker("pull", front_ref)
            images_to_remove.append((alpha, front_ref))
            name = f"uichk-{which}-{unique}"
            containers_to_remove.append((alpha, name))
            keys[which] = sync_container(host, alpha.docker("run", "-d", "--network", "none", "--name", name, front_ref).stdout.strip()).key
            testbed.build_image("beta", ref, f"{which}-two", cmd=LOOP)
            images_to_remove.append((beta, ref))
        services.check(force=True)  # both rows exist, up to date
        assert set(ContainerUpdate.objects.filter(status=UpdateStatus.OK).values_list("container_id", flat=True)) == set(keys.values())
        for which in ("first", "second"):
            testbed.push("beta", testbed.image_ref(f"upd-{unique}/{which}", "1.0"))
        worker = testing.ManagedProcess(
            "celery-worker",
            [sys.executable, "-m", "celery", "-A", "dockmon_site", "worker", "-Q", queue, "-c", "1", "-l", "info",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"{queue}@%h"],
            testing.subprocess_env(), testing.log_dir(),
        ).start()
        front.hold(f"/v2/upd-{unique}/second/manifests/")
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1200, "height": 700})
            page.set_default_timeout(30_000)
            base = f"http://127.0.0.1:{daphne.port}"
            testing.sign_in(page, base, "boss", "pw-boss-12345")
            page.goto(f"{base}/updates/?all=1")
            page.wait_for_selector("#live-dot.on")
            status = lambda which: page.locator(f'#available tr[data-key="{keys[which]}"] .status').inner_text().strip()  # noqa: E731
            assert status("first") == status("second") == "Up to date"
            page.click("#check-now")
            page.wait_for_function(
                "key => document.querySelector(`#available tr[data-key=\"${key}\"] .status`).textContent.trim() === 'Update available'",
                arg=keys["first"], timeout=60_000)
            assert front.held and not front._released.is_set(), "the second image's answer is still held"
            assert status("second") == "Up to date"
            assert page.inner_text("#check-text").strip() == "1 / 2 checked"
            assert int(page.eval_on_selector("#check-bar", "el => el.value")) == 1
            page.screenshot(path=str(shots / "updates-check-progress.png"), full_page=True)
            front.release()
            page.wait_for_function("() => document.getElementById('check-text').textContent.startsWith('Check finished')", timeout=60_000)
            assert status("second") == "Update available"
            assert page.locator('#available tr[data-key] .checked:text("just now")').count() == 2
            page.screenshot(path=str(shots / "updates-check-finished.png"), full_page=True)
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        front.stop()
        if worker is not None:
            os.killpg(worker.pid, 9)
            worker.stop()
        from dockmon_site.celery import app

        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
