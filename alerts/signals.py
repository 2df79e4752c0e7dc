"""Hooks into the rest of DockMon: the event-bus subscriber, disk-usage rows, rule changes.

The subscriber runs inside whichever process emitted the event (monitor, web, worker), often
inside its transaction: it only decides whether anything could care, then hands the work to a
Celery task after the commit. It never raises.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

_UPDATE_END = ("update.succeeded", "update.failed", "update.rolled_back")


def _rules_exist(kinds) -> bool:
    from alerts.models import AlertRule

    return AlertRule.objects.filter(enabled=True, kind__in=list(kinds)).exists()


def _after_commit(func) -> None:
    def run():
        try:
            func()
        except Exception:  # broker down: durations and the next events still evaluate
            logger.warning("could not enqueue alert evaluation", exc_info=True)

    transaction.on_commit(run)


def on_event(event) -> None:
    try:
        _on_event(event)
    except Exception:
        logger.exception("alerts: handling %s failed", getattr(event, "type", "?"))


def _on_event(event) -> None:
    from alerts import evaluator, tasks
    from alerts.choices import METRIC_KINDS

    etype = event.type
    if event.category == "alert":
        return
    if etype == "update.started" and event.container_key:
        seconds = (event.data or {}).get("timeout_seconds") or settings.DOCKMON_ALERT_UPDATE_SUPPRESS_SECONDS
        evaluator.suppress_for_update(event.container_key, until=timezone.now() + timedelta(seconds=float(seconds)),
                                      reason="update running")
        return
    if etype in _UPDATE_END and event.container_key:
        from alerts.models import SubjectState

        keys = {event.container_key, *(v for v in ((event.data or {}).get("old_key"), (event.data or {}).get("new_key")) if v)}
        SubjectState.objects.filter(container_key__in=keys).update(suppressed_until=None, reason="")
    if etype == "stats.sample":
        if not _rules_exist(METRIC_KINDS):
            return
        data = event.data or {}
        samples = [[s.get("key"), s.get("cpu_percent"), s.get("mem_bytes"), s.get("mem_limit")] for s in data.get("samples", [])]
        t = data.get("t") or event.ts
        t = t.isoformat() if hasattr(t, "isoformat") else str(t)
        host_id = str(data.get("host") or event.host_id)
        _after_commit(lambda: tasks.evaluate_samples.delay(host_id, t, samples))
        return
    kinds = evaluator.EVENT_KINDS.get(etype)
    if not kinds or not event.pk or not _rules_exist(kinds):
        return
    event_id = event.pk
    _after_commit(lambda: tasks.evaluate_event.delay(event_id))


def on_disk_usage_saved(sender, instance, created, **kwargs) -> None:
    if not created:
        return
    try:
        from alerts import tasks
        from alerts.choices import RuleKind

        if _rules_exist({RuleKind.DISK_HIGH}):
            usage_id = instance.pk
            _after_commit(lambda: tasks.evaluate_disk.delay(usage_id))
    except Exception:
        logger.exception("alerts: disk usage hook failed")
