"""The Images, Volumes and Networks pages: server side (who gets which buttons) and in Chromium
against a real engine (the live list, a removal refused with its users named, the prune dry run
shown in the confirmation)."""

from __future__ import annotations

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from containers.tests.browser import SCREENSHOTS, login

PAGES = ("/images/", "/volumes/", "/networks/")


@pytest.mark.django_db
def test_pages_need_a_login_and_offer_changes_only_on_hosts_with_deploy(people, make_host, alpha):
    for path in PAGES:
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), path
    host = make_host(alpha)
    assign_perm("containers.view_dockerhost", people.granted, host)
    browser = Client()
    browser.force_login(people.granted)
    for path in PAGES:
        body = browser.get(path).content.decode()
        assert "dockmon/engine-objects.js" in body and host.name in body
        assert 'id="prune"' not in body and 'id="create"' not in body and 'id="pull"' not in body
    assign_perm("containers.operate_dockerhost", people.granted, host)
    assert 'id="pull"' in browser.get("/images/").content.decode()
    assign_perm("containers.deploy_dockerhost", people.granted, host)
    assert 'id="prune"' in browser.get("/images/").content.decode()
    assert 'id="create"' in browser.get("/networks/").content.decode()
    outsider = Client()
    outsider.force_login(people.outsider)
    assert host.name not in outsider.get("/volumes/").content.decode()


def test_volumes_page_lists_refuses_removal_of_a_used_volume_and_prunes_after_a_dry_run(browser, admin, make_host, alpha, daphne,
                                                                                        run_container, unique):
    host = make_host(alpha)
    used, spare = f"uivol-used-{unique}", f"uivol-spare-{unique}"
    try:
        for name in (used, spare):
            alpha.docker("volume", "create", name)
        user = f"uivol-user-{unique}"
        run_container(alpha, user, extra=("-v", f"{used}:/data"))
        page, _ = login(browser, daphne, "boss", "pw-boss-12345")
        page.goto(page.url.split("/", 3)[0] + "//" + page.url.split("/", 3)[2] + "/volumes/")
        row = page.locator(f'tr[data-id="{host.pk}:{used}"]')
        row.wait_for()
        assert user in row.inner_text()
        row.locator("button[data-remove]").click()
        page.click("#confirm-dialog #confirm-ok")
        toast = page.locator(".toast.bad")
        toast.wait_for()
        assert user in toast.inner_text() and "in use" in toast.inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "volumes-refused.png"), full_page=True)
        assert alpha.docker("volume", "inspect", used, check=False).returncode == 0

        # The prune's dry run is what the confirmation lists (other tests' volumes may be there too).
        page.select_option("#prune select[name=host]", str(host.pk))
        page.click("#prune button[type=submit]")
        page.wait_for_selector("#confirm-dialog[open]")
        text = page.inner_text("#confirm-text")
        assert spare in text and used not in text
        page.screenshot(path=str(SCREENSHOTS / "volumes-prune-confirm.png"), full_page=True)
        page.click("#confirm-dialog #confirm-cancel")
        assert alpha.docker("volume", "inspect", spare, check=False).returncode == 0  # cancelled: nothing removed
    finally:
        alpha.docker("rm", "-f", f"uivol-user-{unique}", check=False)
        for name in (used, spare):
            alpha.docker("volume", "rm", "-f", name, check=False)


def test_images_and_networks_pages_list_live_objects_and_show_who_uses_them(browser, admin, make_host, alpha, testbed, daphne,
                                                                            run_container, unique):
    host = make_host(alpha)
    ref = testbed.image_ref(f"t/uiimg-{unique}", "1")
    network = f"uinet-{unique}"
    image_id = testbed.build_image("alpha", ref, "ui")
    try:
        alpha.docker("network", "create", "--internal", "--subnet", "198.19.252.0/24", network)
        user = f"uinet-user-{unique}"
        run_container(alpha, user, image=ref, network=network)
        page, base = login(browser, daphne, "boss", "pw-boss-12345")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

        page.goto(f"{base}/images/")
        page.fill("#filters input[name=search]", f"uiimg-{unique}")
        page.click("#filters button[type=submit]")
        row = page.locator(f'tr[data-id="{host.pk}:{image_id.removeprefix("sha256:")[:12]}"]')
        row.wait_for()
        # The unfiltered list is on the page before the search answers: wait for it to narrow.
        page.wait_for_function("() => document.querySelectorAll('#objects tbody tr').length <= 1", timeout=15000)
        assert ref in row.inner_text() and user in row.inner_text()
        assert page.locator("#objects tbody tr").count() == 1  # the search narrowed the list
        page.screenshot(path=str(SCREENSHOTS / "images-page.png"), full_page=True)

        page.goto(f"{base}/networks/")
        network_id = alpha.docker("network", "inspect", "-f", "{{.Id}}", network).stdout.strip()
        row = page.locator(f'tr[data-id="{host.pk}:{network_id[:12]}"]')
        row.wait_for()
        assert user in row.inner_text() and "198.19.252.0/24" in row.inner_text() and "internal" in row.inner_text()
        page.screenshot(path=str(SCREENSHOTS / "networks-page.png"), full_page=True)
    finally:
        alpha.docker("rm", "-f", f"uinet-user-{unique}", check=False)
        alpha.docker("network", "rm", network, check=False)
        alpha.docker("rmi", "-f", image_id, check=False)
