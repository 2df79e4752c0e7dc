"""Auto-update: containers that opted in are updated after the check that found their update,
or when their maintenance window opens. Only `allow` policies qualify (warn and block are
skipped), and a digest that was rolled back on the container is never tried again.

A run that failed without a rollback (the pull failed, the engine was unreachable...) says
nothing about the release itself, so its digest is not written off: it is retried with a
backoff instead, DOCKMON_AUTO_UPDATE_RETRY_SECONDS after the first failure, twice as long after
each further one, at most DOCKMON_AUTO_UPDATE_RETRY_MAX_SECONDS apart (counted per container and
target digest; a new digest starts afresh)."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from updates.choices import RunStatus, RunTrigger
from updates.models import AutoUpdate, ContainerUpdate, RolledBackDigest, UpdateRun
from updates.policies import decide_many
from updates.runqueue import RunRefused, request_update

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1800
RETRY_MAX_SECONDS = 86400


def retry_delay(failures: int) -> timedelta:
    """How long auto-update waits after the `failures`-th failed run for the same digest."""
    base = getattr(settings, "DOCKMON_AUTO_UPDATE_RETRY_SECONDS", RETRY_SECONDS)
    cap = getattr(settings, "DOCKMON_AUTO_UPDATE_RETRY_MAX_SECONDS", RETRY_MAX_SECONDS)
    return timedelta(seconds=min(cap, base * 2 ** max(0, min(failures, 30) - 1)))


def _failures(keys) -> dict[tuple[str, str], list]:
    """{(container key, target digest): [finished_at of each failed auto run]}."""
    found = defaultdict(list)
    rows = (UpdateRun.objects.filter(old_key__in=list(keys), trigger=RunTrigger.AUTO, status=RunStatus.FAILED)
            .exclude(target_digest="").values_list("old_key", "target_digest", "finished_at", "created_at"))
    for key, digest, finished_at, created_at in rows:
        found[(key, digest)].append(finished_at or created_at)
    return found


def candidates(keys=None, *, now=None) -> list[ContainerUpdate]:
    """ContainerUpdate rows with an update that auto-update may start now."""
    now = now or timezone.now()
    rows = ContainerUpdate.objects.filter(
        update_available=True, container__removed_at__isnull=True, container__replaced_by="",
        container__auto_update__enabled=True, container__host__enabled=True,
    ).select_related("container", "container__host", "container__auto_update")
    if keys is not None:
        rows = rows.filter(container_id__in=list(keys))
    rows = list(rows)
    if not rows:
        return []
    skipped = set(
        RolledBackDigest.objects.filter(container_id__in=[r.container_id for r in rows]).values_list("container_id", "digest")
    )
    failures = _failures(r.container_id for r in rows)
    decisions = decide_many([r.container for r in rows])
    result = []
    for row in rows:
        if (row.container_id, row.latest_digest) in skipped:
            continue  # this release failed on this container before
        failed = failures.get((row.container_id, row.latest_digest))
        if failed and now < max(failed) + retry_delay(len(failed)):
            continue  # its last try failed: wait before the next one
        if not decisions[row.container_id].allows_auto_update:
            continue
        if not row.container.auto_update.in_window(now):
            continue
        result.append(row)
    return result


def schedule(keys=None, *, now=None) -> list[int]:
    """Create (and start, within the per-host limit) a run for every candidate; returns run ids."""
    batch = uuid.uuid4().hex[:12]
    runs = []
    for row in candidates(keys, now=now):
        try:
            run = request_update(row.container, user=None, trigger=RunTrigger.AUTO, batch=batch)
        except RunRefused as exc:
            logger.info("auto-update of %s skipped: %s", row.container_id, exc)
            continue
        runs.append(run.pk)
    return runs


# --- the `auto_update` field of PATCH /api/v1/containers/{key}/settings/ ---------------------
def get_setting(container) -> bool:
    setting = AutoUpdate.objects.filter(container_id=container.pk).first()
    return bool(setting and setting.enabled)


def set_setting(container, value: bool, user) -> None:
    AutoUpdate.objects.update_or_create(container_id=container.pk, defaults={"enabled": bool(value)})


def get_window(container) -> dict | None:
    setting = AutoUpdate.objects.filter(container_id=container.pk).first()
    if setting is None or not setting.has_window:
        return None
    return {"days": setting.days, "start": setting.start.strftime("%H:%M"), "end": setting.end.strftime("%H:%M"),
            "timezone": setting.timezone}


def set_window(container, value: dict | None, user) -> None:
    setting, _ = AutoUpdate.objects.get_or_create(container_id=container.pk, defaults={"enabled": False})
    if not value:
        setting.start = setting.end = None
        setting.days = []
    else:
        setting.days, setting.start, setting.end = value.get("days") or [], value["start"], value["end"]
        setting.timezone = value.get("timezone") or "UTC"
    setting.save()


def move_records(old, new) -> None:
    """container_rekeyed: the opt-in and the memory of rolled-back digests follow the container."""
    if not AutoUpdate.objects.filter(container_id=new.pk).exists():
        AutoUpdate.objects.filter(container_id=old.pk).update(container_id=new.pk)
    else:
        AutoUpdate.objects.filter(container_id=old.pk).delete()
    for item in RolledBackDigest.objects.filter(container_id=old.pk):
        if RolledBackDigest.objects.filter(container_id=new.pk, digest=item.digest).exists():
            item.delete()
        else:
            RolledBackDigest.objects.filter(pk=item.pk).update(container_id=new.pk)
