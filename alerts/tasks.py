"""Thin Celery tasks: they take ids (or a compact stats cycle) and call the evaluator/notifier."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="alerts.evaluate_event", ignore_result=True)
def evaluate_event(event_id: int) -> int:
    from alerts import evaluator

    return evaluator.evaluate_event(event_id)


@shared_task(name="alerts.evaluate_samples", ignore_result=True)
def evaluate_samples(host_id: str, t: str, samples: list) -> int:
    from datetime import datetime

    from alerts import evaluator

    return evaluator.evaluate_samples(host_id, datetime.fromisoformat(t), samples)


@shared_task(name="alerts.evaluate_disk", ignore_result=True)
def evaluate_disk(usage_id: int) -> int:
    from alerts import evaluator

    return evaluator.evaluate_disk(usage_id)


@shared_task(name="alerts.send_notification", ignore_result=True)
def send_notification(notification_id: int) -> str | None:
    from alerts import notify

    return notify.send(notification_id)


@shared_task(name="alerts.dispatch_notifications", ignore_result=True)
def dispatch_notifications() -> int:
    from alerts import notify

    return notify.dispatch_due()


@shared_task(name="alerts.periodic", ignore_result=True)
def periodic() -> dict:
    """Durations that ran out, snoozes that ended, notifications held by windows that closed."""
    from alerts import evaluator, notify

    return {"due": evaluator.evaluate_due(), "unsnoozed": evaluator.end_snoozes(), "released": notify.release_held()}


@shared_task(name="alerts.prune_history", ignore_result=True)
def prune_history() -> int:
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from alerts.models import Alert, Notification

    cutoff = timezone.now() - timedelta(days=settings.DOCKMON_ALERT_HISTORY_DAYS)
    # Counted: alerts and test notifications removed (their history and deliveries go with them).
    _, alerts = Alert.objects.filter(state="resolved", resolved_at__lt=cutoff).delete()
    _, tests = Notification.objects.filter(alert__isnull=True, created_at__lt=cutoff).delete()
    return alerts.get("alerts.Alert", 0) + tests.get("alerts.Notification", 0)
