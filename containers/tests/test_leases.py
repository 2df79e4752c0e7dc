"""Host leases between monitor processes (containers.leases), on the real database."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from containers import leases
from containers.models import DockerHost, HostLease, MonitorInstance


def _hosts(n: int, unique: str) -> set[str]:
    return {str(DockerHost.objects.create(name=f"lease-{unique}-{i:02d}", url=f"tcp://127.0.0.1:{20000 + i}").pk) for i in range(n)}


def _owners() -> Counter:
    return Counter(HostLease.objects.exclude(owner="").values_list("owner", flat=True))


@pytest.mark.django_db
def test_one_monitor_takes_every_host_then_shares_them_when_a_second_comes(unique):
    hosts = _hosts(20, unique)
    leases.register("m1")
    first = leases.balance("m1", hosts)
    assert first.owned == hosts and first.fair_share == 20 and first.live_monitors == 1

    leases.register("m2")
    # m2 finds nothing free on its first round; m1 sees two live monitors and gives back half.
    assert leases.balance("m2", hosts).owned == set()
    gave = leases.balance("m1", hosts)
    assert len(gave.surplus) == 10 and len(gave.owned) == 10
    # Until m1 has stopped watching them and released them, m2 cannot take them.
    assert leases.balance("m2", hosts).owned == set()
    assert leases.release("m1", gave.surplus) == 10
    took = leases.balance("m2", hosts)
    assert took.owned == gave.surplus
    # Stable from then on: every host has exactly one owner, 10 each.
    for _ in range(3):
        a, b = leases.balance("m1", hosts), leases.balance("m2", hosts)
        assert a.owned.isdisjoint(b.owned) and a.owned | b.owned == hosts
        assert not (a.claimed or a.surplus or b.claimed or b.surplus)
    assert _owners() == {"m1": 10, "m2": 10}
    assert MonitorInstance.objects.get(pk="m1").hosts_watched == 10


@pytest.mark.django_db
def test_a_dead_monitors_hosts_are_taken_after_its_leases_expire(unique, settings):
    settings.DOCKMON_MONITOR_LEASE_SECONDS = 15
    hosts = _hosts(6, unique)
    now = timezone.now()
    leases.register("m1")
    leases.register("m2")
    leases.balance("m1", hosts, now=now)
    leases.balance("m2", hosts, now=now)
    leases.balance("m1", hosts, now=now)
    leases.balance("m2", hosts, now=now)
    assert _owners() == {"m1": 3, "m2": 3}
    m1_hosts = set(map(str, HostLease.objects.filter(owner="m1").values_list("host_id", flat=True)))

    # m1 stops renewing (killed). Before its leases expire m2 does not touch them.
    soon = now + timedelta(seconds=10)
    assert leases.balance("m2", hosts, now=soon).claimed == set()
    # After expiry m2 is the only live monitor: it takes all of m1's hosts in one round.
    later = now + timedelta(seconds=16)
    result = leases.balance("m2", hosts, now=later)
    assert result.live_monitors == 1 and result.claimed == m1_hosts and result.owned == hosts
    assert _owners() == {"m2": 6}

    # m1 comes back (it was only stalled): its renewal finds the hosts gone, it owns nothing
    # until the next share-out, and no host is ever owned twice.
    back = leases.balance("m1", hosts, now=later + timedelta(seconds=1))
    assert back.owned == set()
    assert sum(_owners().values()) == 6


@pytest.mark.django_db
def test_a_clean_stop_gives_the_hosts_back_at_once(unique):
    hosts = _hosts(4, unique)
    leases.register("m1")
    leases.balance("m1", hosts)
    leases.register("m2")
    assert leases.unregister("m1") == 4
    assert not MonitorInstance.objects.filter(pk="m1").exists()
    assert leases.balance("m2", hosts).owned == hosts


@pytest.mark.django_db
def test_hosts_outside_the_candidates_are_released(unique):
    hosts = _hosts(4, unique)
    leases.register("m1")
    leases.balance("m1", hosts)
    keep = set(sorted(hosts)[:2])
    result = leases.balance("m1", keep)
    assert result.owned == keep
    assert set(map(str, HostLease.objects.filter(owner="").values_list("host_id", flat=True))) == hosts - keep
    assert leases.watchers_of(sorted(keep)[0]) == "m1" and leases.watchers_of(sorted(hosts - keep)[0]) == ""


@pytest.mark.django_db(transaction=True)
def test_monitors_racing_for_free_hosts_never_share_one(unique):
    hosts = _hosts(40, unique)
    names = [f"race{n}" for n in range(4)]
    for name in names:
        leases.register(name)
    barrier = threading.Barrier(len(names), timeout=30)
    results: dict[str, set[str]] = {}
    errors: list = []

    def run(name):
        from django.db import connection

        try:
            for _ in range(6):
                barrier.wait()
                results[name] = leases.balance(name, hosts).owned
        except Exception as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    owned = [h for name in names for h in results[name]]
    assert len(owned) == len(set(owned)), "a host owned by two monitors"
    db_owners = HostLease.objects.exclude(owner="").values_list("host_id", "owner")
    assert {str(h): o for h, o in db_owners} == {h: name for name in names for h in results[name]}
    assert all(len(results[name]) <= 10 for name in names)


@pytest.mark.django_db
def test_a_crashed_monitor_of_this_machine_is_replaced_without_waiting_for_expiry(unique):
    """A monitor killed and started again (same machine) gets its hosts back at once: the dead
    process's leases are freed, while a live process's leases are left alone."""
    import socket
    import subprocess

    hosts = _hosts(4, unique)
    gone = subprocess.Popen(["true"])
    gone.wait(5)
    alive = subprocess.Popen(["sleep", "60"])
    try:
        MonitorInstance.objects.create(pk="dead", hostname=socket.gethostname(), pid=gone.pid)
        leases.balance("dead", hosts)
        assert _owners() == {"dead": 4}
        MonitorInstance.objects.create(pk="elsewhere", hostname="another-machine", pid=alive.pid)
        leases.register("fresh")
        assert not MonitorInstance.objects.filter(pk="dead").exists()
        assert MonitorInstance.objects.filter(pk="elsewhere").exists()  # not this machine's: left alone
        MonitorInstance.objects.filter(pk="elsewhere").delete()
        assert leases.balance("fresh", hosts).owned == hosts

        MonitorInstance.objects.create(pk="running", hostname=socket.gethostname(), pid=alive.pid,
                                       process_started=leases._start_ticks(alive.pid))
        MonitorInstance.objects.create(pk="reused", hostname=socket.gethostname(), pid=alive.pid,
                                       process_started=leases._start_ticks(alive.pid) - 1)  # same pid, another process
        leases.release("fresh", hosts)
        leases.balance("running", hosts)
        leases.register("fresh")
        assert MonitorInstance.objects.filter(pk="running").exists()  # alive: its leases stay
        assert not MonitorInstance.objects.filter(pk="reused").exists()
        assert set(HostLease.objects.values_list("owner", flat=True).distinct()) <= {"running", ""}
    finally:
        alive.kill()
        alive.wait(5)


@pytest.mark.django_db
def test_the_admin_lists_monitors_and_leases_and_releases_one(unique, admin_user, django_user_model):
    from django.test import Client

    hosts = _hosts(2, unique)
    leases.register("m1")
    leases.balance("m1", hosts)
    client = Client()
    client.force_login(admin_user)
    page = client.get("/admin/containers/monitorinstance/")
    assert page.status_code == 200 and "m1" in page.content.decode()
    assert client.get("/admin/containers/hostlease/?q=lease-").status_code == 200
    first = sorted(hosts)[0]
    response = client.post("/admin/containers/hostlease/", {"action": "release", "_selected_action": [first]}, follow=True)
    assert response.status_code == 200 and "Released 1 lease" in response.content.decode()
    assert HostLease.objects.get(host_id=first).owner == ""
    # Staff who are not superusers do not see the monitors' bookkeeping.
    staff = django_user_model.objects.create_user("leasestaff", password="pw-staff-12345", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/containers/hostlease/").status_code == 403
