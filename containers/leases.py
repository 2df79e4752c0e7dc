"""Host leases: several monitor processes split the hosts between them through the database.

Each monitor registers a MonitorInstance and, every DOCKMON_MONITOR_RENEW_SECONDS, calls
`balance()`:

1. heartbeat its instance row;
2. renew the leases it holds (only rows it still owns: a lease another monitor took over after
   it expired is lost, and the watcher for that host stops);
3. work out its fair share, ceil(hosts / live monitors): leases above it are returned as
   surplus (the monitor stops watching those hosts, then `release()`s them and the others claim
   them on their next round); below it, claim free and expired leases up to it.

Claims are conditional UPDATEs that repeat what was read (owner and expiry), so of two monitors
racing for a host exactly one wins, on SQLite and on PostgreSQL. A monitor that dies stops
renewing: its leases expire after DOCKMON_MONITOR_LEASE_SECONDS and the others take its hosts
(they reconcile each host in full when they connect, so nothing that happened meanwhile is lost).
A monitor that stops cleanly releases its leases at once.

Times are the monitors' own clocks: monitors on several machines need them in sync (NTP); the
lease length is many times any normal skew.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from containers.models import DockerHost, HostLease, MonitorInstance


def new_instance_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


@dataclass
class Balance:
    owned: set[str]
    claimed: set[str]
    surplus: set[str]  # above the fair share: stop watching these, then release() them
    live_monitors: int
    fair_share: int


def register(instance_id: str, *, shard: str = "0/1") -> MonitorInstance:
    reap_local(instance_id)
    now = timezone.now()
    instance, _ = MonitorInstance.objects.update_or_create(
        pk=instance_id,
        defaults={
            "hostname": socket.gethostname()[:255], "pid": os.getpid(), "process_started": _start_ticks(os.getpid()) or 0,
            "shard": shard, "started_at": now, "heartbeat_at": now,
        },
    )
    return instance


def unregister(instance_id: str) -> int:
    """Give back every lease of this monitor and remove its instance row; the number released."""
    released = HostLease.objects.filter(owner=instance_id).update(owner="", expires_at=None)
    MonitorInstance.objects.filter(pk=instance_id).delete()
    return released


def _start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot, /proc/<pid>/stat field 22); None if gone.
    With the pid it names one process for good: a reused pid has another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    if not fields or fields[0] in (b"Z", b"X"):  # a zombie runs nothing
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _process_gone(pid: int, started: int) -> bool:
    if pid <= 0 or not os.path.isdir("/proc/self"):
        return False  # cannot tell here: leave it to the lease expiry
    now = _start_ticks(pid)
    return now is None or (started > 0 and now != started)


def reap_local(instance_id: str) -> int:
    """Free at once the leases of monitors of this machine whose process is gone (a crash and a
    restart), instead of waiting for them to expire; the number of leases freed."""
    hostname = socket.gethostname()[:255]
    rows = MonitorInstance.objects.filter(hostname=hostname).exclude(pk=instance_id).values_list("pk", "pid", "process_started")
    dead = [pk for pk, pid, started in rows if _process_gone(pid, started)]
    if not dead:
        return 0
    freed = HostLease.objects.filter(owner__in=dead).update(owner="", expires_at=None)
    MonitorInstance.objects.filter(pk__in=dead).delete()
    return freed


def _lease_seconds() -> float:
    return settings.DOCKMON_MONITOR_LEASE_SECONDS


def balance(instance_id: str, candidates: set[str], *, now=None) -> Balance:
    """One round of heartbeat, renewal and rebalancing; `candidates` are the enabled host ids this
    monitor may watch (its shard). Returns the hosts it owns after the round."""
    now = now or timezone.now()
    lease_seconds = _lease_seconds()
    until = now + timedelta(seconds=lease_seconds)
    stale = now - timedelta(seconds=lease_seconds)

    MonitorInstance.objects.filter(pk=instance_id).update(heartbeat_at=now)
    # A monitor whose row was removed (stale cleanup by another, or a restarted database) comes back.
    if not MonitorInstance.objects.filter(pk=instance_id).exists():
        register(instance_id)
    # Every candidate host has a lease row to claim.
    have = {str(h) for h in HostLease.objects.filter(host_id__in=candidates).values_list("host_id", flat=True)}
    missing = [HostLease(host_id=h) for h in candidates if h not in have]
    if missing:
        HostLease.objects.bulk_create(missing, ignore_conflicts=True)

    # Renew what is still ours (and no longer a candidate: give it back).
    HostLease.objects.filter(owner=instance_id).exclude(host_id__in=candidates).update(owner="", expires_at=None)
    HostLease.objects.filter(owner=instance_id, host_id__in=candidates).update(expires_at=until)
    owned = {str(h) for h in HostLease.objects.filter(owner=instance_id).values_list("host_id", flat=True)}

    live = MonitorInstance.objects.filter(heartbeat_at__gt=stale).count() or 1
    # Remove instance rows dead for a long time (their leases have expired long ago).
    MonitorInstance.objects.filter(heartbeat_at__lt=now - timedelta(seconds=lease_seconds * 20)).delete()
    total = len(candidates)
    fair = math.ceil(total / live) if total else 0

    surplus: set[str] = set()
    if len(owned) > fair:
        # Keep the hosts held longest (they are connected and warm); give back the newest. They
        # stay ours until release(): the caller stops watching them first, so that no host is
        # watched by two monitors in between.
        order = list(
            HostLease.objects.filter(owner=instance_id).order_by("-acquired_at", "host_id").values_list("host_id", flat=True)
        )
        surplus = {str(h) for h in order[: len(owned) - fair]}
        owned -= surplus

    claimed: set[str] = set()
    if len(owned) < fair:
        free = Q(owner="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now)
        rows = list(
            HostLease.objects.filter(free, host_id__in=candidates)
            .exclude(owner=instance_id)
            .order_by("host_id")
            .values_list("host_id", "owner", "expires_at")[: fair - len(owned)]
        )
        for host_id, owner, expires_at in rows:
            won = HostLease.objects.filter(host_id=host_id, owner=owner, expires_at=expires_at).update(
                owner=instance_id, expires_at=until, acquired_at=now
            )
            if won:
                claimed.add(str(host_id))
        owned |= claimed

    MonitorInstance.objects.filter(pk=instance_id).update(hosts_watched=len(owned))
    return Balance(owned=owned, claimed=claimed, surplus=surplus, live_monitors=live, fair_share=fair)


def release(instance_id: str, host_ids) -> int:
    """Give back leases this monitor holds (after it stopped watching those hosts)."""
    return HostLease.objects.filter(owner=instance_id, host_id__in=list(host_ids)).update(owner="", expires_at=None)


def watchers_of(host_id) -> str:
    """The monitor instance that watches a host now ('' when none holds a live lease)."""
    lease = HostLease.objects.filter(host_id=host_id, expires_at__gt=timezone.now()).exclude(owner="").first()
    return lease.owner if lease else ""


def enabled_host_ids() -> set[str]:
    return {str(h) for h in DockerHost.objects.filter(enabled=True).values_list("id", flat=True)}
