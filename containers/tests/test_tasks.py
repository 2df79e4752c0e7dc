"""The containers app's Celery tasks, run the way a worker runs them (eagerly, through Celery's
own apply path) against the real testbed engines: the stats fan-out, rollups, retention and
`docker system df`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from containers import stats, tasks
from containers.choices import HostStatus, StatsTier
from containers.models import DiskUsage, DockerHost, StatsBatch
from testkit import testing

pytestmark = pytest.mark.django_db

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']
MIB = 1024 * 1024


def _online(host: DockerHost) -> DockerHost:
    host.status = HostStatus.ONLINE
    host.save(update_fields=["status"])
    return host


def test_collect_stats_fans_out_to_every_online_host_and_skips_the_others(eager, make_host, alpha, beta, run_container, sync_container, unique):
    on_alpha = _online(make_host(alpha))
    on_beta = _online(make_host(beta, via="tls"))
    a = sync_container(on_alpha, run_container(alpha, f"ta-{unique}", *LOOP))
    b = sync_container(on_beta, run_container(beta, f"tb-{unique}", *LOOP))
    offline = make_host(alpha, status=HostStatus.OFFLINE)
    disabled = make_host(alpha, status=HostStatus.ONLINE, enabled=False)

    result = tasks.collect_stats.apply()
    assert result.successful() and result.result == 2  # one collect_host_stats task per online, enabled host

    _, alpha_data = stats.latest(on_alpha.pk)
    _, beta_data = stats.latest(on_beta.pk)
    assert a.short_id in alpha_data and b.short_id in beta_data
    assert b.short_id not in alpha_data and a.short_id not in beta_data  # each engine's own containers
    assert alpha_data[stats.HOST_KEY][stats.COUNT] == len(alpha_data) - 1
    assert not StatsBatch.objects.filter(host__in=[offline, disabled]).exists()


def test_collect_host_stats_reports_an_unreachable_engine_without_raising(eager):
    # The host was online at its last check, but nothing listens there now.
    host = DockerHost.objects.create(name="gone", url="tcp://127.0.0.1:1", status=HostStatus.ONLINE)
    result = tasks.collect_host_stats.apply((str(host.pk),))
    assert result.successful() and "error" in result.result
    assert not StatsBatch.objects.filter(host=host).exists()
    assert tasks.collect_host_stats.apply(("00000000-0000-0000-0000-000000000000",)).result["skipped"] is True


def test_rollup_and_prune_tasks_write_and_delete_rows(eager, make_host, alpha, run_container, sync_container, unique, settings):
    """GIVEN two real raw rows of a host, moved three hours back into one 5-minute window
    WHEN rollup_stats and then prune_stats run
    THEN a 5-minute row and a 1-hour row hold min/avg/max of the two, and the raw rows past
    their retention are deleted while the rollups stay."""
    host = _online(make_host(alpha))
    row = sync_container(host, run_container(alpha, f"tr-{unique}", *LOOP))
    tasks.collect_host_stats.apply((str(host.pk),))
    raw = StatsBatch.objects.get(host=host, tier=StatsTier.RAW)
    base = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    first = raw.data[row.short_id]
    second = list(first)
    first[0], second[0] = 10.0, 30.0  # CPU % of the two samples
    StatsBatch.objects.filter(pk=raw.pk).update(ts=base, data={**raw.data, row.short_id: first})
    StatsBatch.objects.create(host=host, tier=StatsTier.RAW, ts=base + timedelta(seconds=10), data={row.short_id: second})

    written = tasks.rollup_stats.apply().result
    assert written == {StatsTier.FIVE_MINUTES: 1, StatsTier.HOUR: 1}
    five = StatsBatch.objects.get(host=host, tier=StatsTier.FIVE_MINUTES).data[row.short_id]
    hour = StatsBatch.objects.get(host=host, tier=StatsTier.HOUR).data[row.short_id]
    for point in (five, hour):
        assert (point[stats.CPU], point[stats.CPU_MIN], point[stats.CPU_MAX], point[stats.COUNT]) == (20.0, 10.0, 30.0, 2)
        assert point[stats.MEM] == first[1] * 1024  # raw rows keep KiB, rollups bytes
    assert tasks.rollup_stats.apply().result == {StatsTier.FIVE_MINUTES: 0, StatsTier.HOUR: 0}  # nothing new

    fresh = StatsBatch.objects.create(host=host, tier=StatsTier.RAW, ts=timezone.now(), data={row.short_id: second})
    settings.DOCKMON_STATS_RAW_HOURS = 1
    assert tasks.prune_stats.apply().result == 2
    assert list(StatsBatch.objects.filter(host=host, tier=StatsTier.RAW)) == [fresh]
    assert StatsBatch.objects.filter(host=host, tier__in=[StatsTier.FIVE_MINUTES, StatsTier.HOUR]).count() == 2


def test_collect_disk_usage_records_containers_volumes_and_build_cache(eager, make_host, alpha, run_container, unique, admin_client):
    """Every `docker system df` group is stored, not only images: a stopped container that wrote
    2 MiB to its own layer, a 1 MiB volume nobody uses and a 1 MiB volume a running container uses."""
    host = _online(make_host(alpha))
    free_volume, used_volume = f"free-{unique}", f"used-{unique}"
    try:
        run_container(alpha, f"dw-{unique}", "sh", "-c", "dd if=/dev/zero of=/layer bs=1048576 count=2 2>/dev/null", detach=False)
        run_container(alpha, f"fv-{unique}", "sh", "-c", "dd if=/dev/zero of=/v/f bs=1048576 count=1 2>/dev/null", detach=False,
                      extra=("-v", f"{free_volume}:/v"))
        alpha.docker("rm", f"fv-{unique}")
        run_container(alpha, f"uv-{unique}", "sh", "-c", 'dd if=/dev/zero of=/v/f bs=1048576 count=1 2>/dev/null; trap "exit 0" TERM; while true; do sleep 1; done',
                      extra=("-v", f"{used_volume}:/v"))
        testing.wait_for(lambda: alpha.docker("exec", f"uv-{unique}", "ls", "/v/f", check=False).returncode == 0, message="the volume write")

        assert tasks.collect_disk_usage.apply().result == 1
        usage = DiskUsage.objects.get(host=host)
        assert usage.containers_count >= 2
        assert usage.containers_size >= 2 * MIB and usage.containers_reclaimable >= 2 * MIB  # the stopped one's layer
        assert usage.volumes_count >= 2
        assert usage.volumes_size >= 2 * MIB
        assert usage.volumes_reclaimable >= MIB  # the unused volume
        assert usage.volumes_size - usage.volumes_reclaimable >= MIB  # the used one is not reclaimable
        assert usage.images_count >= 1 and usage.images_size > 0
        # This engine has no BuildKit (no buildx here), so it keeps no build cache: the engine's own
        # figure is 0 and so is ours (the field is stored, not left out).
        cli = {line.split("\t")[0]: line.split("\t")[1] for line in alpha.docker(
            "system", "df", "--format", "{{.Type}}\t{{.TotalCount}}").stdout.splitlines()}
        assert usage.build_cache_count == int(cli["Build Cache"])
        assert usage.build_cache_size >= 0 and usage.build_cache_reclaimable <= usage.build_cache_size
        served = admin_client.get(f"/api/v1/hosts/{host.pk}/disk-usage/").data["results"][0]
        for field in ("containers_count", "containers_size", "volumes_count", "volumes_size", "volumes_reclaimable",
                      "build_cache_count", "build_cache_size"):
            assert served[field] == getattr(usage, field), field
    finally:
        alpha.docker("rm", "-f", f"uv-{unique}", check=False)
        alpha.docker("volume", "rm", "-f", free_volume, used_volume, check=False)
