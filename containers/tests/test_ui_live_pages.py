"""Dashboard, hosts and events pages in headless Chromium: live against daphne, the monitor and
real engines. Other people's containers may come and go on the same engines while these run,
so counts are compared with the database, and rows are looked up by their own keys."""

from __future__ import annotations

import pytest

from containers import stats
from containers.models import Container, DockerHost
from containers.tests.browser import BURN, LOOP, SUBSCRIBED_PROBE, live, login, wait_stats_subscribed
from testkit.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _running_kpi() -> str:
    present = Container.objects.present()
    return f"{present.filter(state='running').count()} / {present.count()}"


def test_dashboard_counts_and_top_cpu_change_without_a_reload(browser, admin, alpha, daphne, run_container, watched_container, unique):
    name = f"dash-{unique}"
    host, key = watched_container(alpha, name, *LOOP)
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.context.add_init_script(SUBSCRIBED_PROBE)
    page.goto(f"{base}/")
    live(page)
    wait_stats_subscribed(page)
    wait_for(lambda: page.inner_text("#kpi-running") == _running_kpi(), message="dashboard shows the database's counts")
    shown_before = page.inner_text("#kpi-running")

    # A docker CLI stop: the running count drops on the open page (it follows the database).
    alpha.docker("stop", "-t", "0", name)
    wait_for(lambda: Container.objects.filter(pk=key, state="exited").exists(), message="monitor saw the stop")
    wait_for(lambda: page.inner_text("#kpi-running") == _running_kpi() != shown_before, timeout=5, message="live running count")
    page.wait_for_selector('#states tr[data-state="exited"]')

    # A container that burns a CPU core shows in Top CPU once a stats cycle has run (stats.sample).
    page.evaluate("() => { window.__samples = 0; DockMon.on('stats.sample', function () { window.__samples++; }); }")
    burn_id = run_container(alpha, f"burn-{unique}", *BURN)
    burn_key = f"{host.pk}:{burn_id[:12]}"
    wait_for(lambda: Container.objects.filter(pk=burn_key, state="running").exists(), message="burner synced", timeout=30)
    wait_for(lambda: page.inner_text("#kpi-running") == _running_kpi(), timeout=5, message="burner counted")
    assert page.locator(f'#top-cpu tr[data-key="{burn_key}"]').count() == 0
    stats.collect_host(host.pk)
    page.wait_for_selector(f'#top-cpu tr[data-key="{burn_key}"]', timeout=5_000)
    assert page.evaluate("() => window.__samples") >= 1
    cpu = page.inner_text(f'#top-cpu tr[data-key="{burn_key}"] td.num')
    assert cpu.endswith(" %") and float(cpu.split()[0]) > 20, cpu
    page.context.close()


def test_host_detail_is_live(browser, admin, make_host, alpha, monitor, daphne, run_container, unique):
    from containers.services import record_disk_usage

    host = make_host(alpha)
    first = run_container(alpha, f"hd-a-{unique}", *LOOP)
    monitor()
    first_key = f"{host.pk}:{first[:12]}"
    wait_for(lambda: Container.objects.filter(pk=first_key).exists(), message="monitor sync", timeout=30)
    record_disk_usage(DockerHost.objects.get(pk=host.pk))
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.context.add_init_script(SUBSCRIBED_PROBE)
    page.goto(f"{base}/hosts/{host.pk}/")
    live(page)
    wait_stats_subscribed(page)

    # Engine facts and disk usage (docker system df) are on the page.
    assert "Not measured" not in page.inner_text("#disk")
    total = page.inner_text("#disk strong.bytes")
    assert total[0].isdigit() and total.endswith("B"), total
    assert "Images" in page.inner_text("#disk") and "Build cache" in page.inner_text("#disk")
    assert page.locator(f'#host-containers tr[data-key="{first_key}"] .badge.state.running').count() == 1

    # Containers appear, change state and disappear without a reload; the counts follow.
    second = run_container(alpha, f"hd-b-{unique}", *LOOP)
    second_key = f"{host.pk}:{second[:12]}"
    page.wait_for_selector(f'#host-containers tr[data-key="{second_key}"]', timeout=5_000)
    alpha.docker("stop", "-t", "0", f"hd-a-{unique}")
    page.wait_for_selector(f'#host-containers tr[data-key="{first_key}"] .badge.state.exited', timeout=5_000)
    alpha.docker("rm", "-f", f"hd-b-{unique}")
    page.wait_for_selector(f'#host-containers tr[data-key="{second_key}"]', state="detached", timeout=5_000)
    rows = page.locator("#host-containers tr[data-key]").count()
    assert page.inner_text("#n-total") == str(rows)
    assert page.inner_text("#n-running") == str(page.locator("#host-containers tr[data-key] .badge.state.running").count())

    # The aggregate chart grows with each stats cycle (host totals of stats.sample).
    before = int(page.get_attribute("#chart-cpu", "data-points") or 0)
    stats.collect_host(host.pk)
    page.wait_for_function(f"() => Number(document.getElementById('chart-cpu').dataset.points || 0) > {before}", timeout=5_000)
    assert page.locator("#chart-cpu polyline").count() == 1
    page.context.close()


def test_hosts_list_counts_follow_the_engine(browser, admin, make_host, alpha, monitor, daphne, run_container, unique):
    host = make_host(alpha)
    monitor()
    wait_for(lambda: DockerHost.objects.filter(pk=host.pk, status="online").exists(), message="host online", timeout=30)
    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    page.goto(f"{base}/hosts/")
    live(page)
    counts = f'tr[data-host="{host.pk}"] .counts'

    def db_counts():
        present = Container.objects.present().filter(host=host)
        return f"{present.filter(state='running').count()} / {present.count()}"

    shown_before = page.inner_text(counts)
    cid = run_container(alpha, f"hl-{unique}", *LOOP)
    wait_for(lambda: Container.objects.filter(pk=f"{host.pk}:{cid[:12]}", state="running").exists(), message="synced", timeout=30)
    wait_for(lambda: page.inner_text(counts) == db_counts() != shown_before, timeout=5, message="live host counts")
    page.context.close()


def test_events_page_filters_by_host_and_container_and_shows_new_events_live(
    browser, admin, make_host, alpha, beta, monitor, daphne, run_container, unique
):
    host_a, host_b = make_host(alpha), make_host(beta)
    monitor()
    wait_for(lambda: DockerHost.objects.filter(status="online").count() == 2, message="hosts online", timeout=30)
    # Created while the monitor watches: "was created" events are logged (an initial sync logs none).
    mine = run_container(alpha, f"ev-{unique}", *LOOP)
    other = run_container(beta, f"ev-other-{unique}", *LOOP)
    mine_key, other_key = f"{host_a.pk}:{mine[:12]}", f"{host_b.pk}:{other[:12]}"
    wait_for(lambda: Container.objects.filter(pk__in=[mine_key, other_key]).count() == 2, message="sync", timeout=30)
    page, base = login(browser, daphne, "boss", "pw-boss-12345")

    # Server-side: the host filter and the container filter (by name) narrow what is listed.
    page.goto(f"{base}/events/?host={host_b.pk}")
    assert f"ev-other-{unique} was created" in page.inner_text("#events")
    assert f"ev-{unique} was created" not in page.inner_text("#events")
    page.goto(f"{base}/events/?container=ev-{unique}")
    assert f"ev-{unique} was created" in page.inner_text("#events")
    assert f"ev-other-{unique}" not in page.inner_text("#events")
    assert page.input_value("input[name=container]") == f"ev-{unique}"

    # Live: with host + container filters on, only that container's new events arrive.
    page.goto(f"{base}/events/?host={host_a.pk}&container={mine_key}")
    live(page)
    assert page.eval_on_selector("select[name=host]", "s => s.value") == str(host_a.pk)
    beta.docker("stop", "-t", "0", f"ev-other-{unique}")
    wait_for(lambda: Container.objects.filter(pk=other_key, state="exited").exists(), message="other stopped")
    alpha.docker("stop", "-t", "0", f"ev-{unique}")
    page.wait_for_selector(f"#events tbody tr.new >> text=ev-{unique} exited", timeout=5_000)
    assert f"ev-other-{unique} exited" not in page.inner_text("#events")

    # Without filters every new event arrives.
    page.goto(f"{base}/events/")
    live(page)
    beta.docker("start", f"ev-other-{unique}")
    page.wait_for_selector(f"#events tbody tr.new >> text=ev-other-{unique}", timeout=5_000)
    page.context.close()
