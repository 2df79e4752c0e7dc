"""Notifications: queueing them (the outbox), holding them during maintenance windows, and
delivering them with retries.

Queueing happens inside the evaluation transaction, so a notification exists exactly when the
alert change that caused it committed. Delivery claims one row with a conditional UPDATE
(pending → sending); whichever worker wins sends it, the others move on. A worker that dies
mid-send leaves a `sending` row whose lease runs out; the dispatcher puts it back in the queue.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from alerts import templating
from alerts.choices import AlertState, HistoryAction, NotificationEvent, NotificationStatus
from alerts.models import Alert, AlertHistory, AlertRule, DeliveryAttempt, MaintenanceWindow, Notification, NotificationChannel
from alerts.transports import transport_class
from alerts.transports.base import Message, TransportError, scrub, secret_values
from dockmon_site import crypto

logger = logging.getLogger(__name__)
S = NotificationStatus


# ---------------------------------------------------------------------------
# Maintenance windows
# ---------------------------------------------------------------------------
def active_window(host_id, container_key: str, at: datetime | None = None) -> MaintenanceWindow | None:
    at = at or timezone.now()
    for window in MaintenanceWindow.objects.filter(enabled=True):
        if window.covers(host_id, container_key) and window.active_at(at):
            return window
    return None


# ---------------------------------------------------------------------------
# Queueing (called inside the evaluation transaction)
# ---------------------------------------------------------------------------
def _channels(rule: AlertRule) -> list[NotificationChannel]:
    return [channel for channel in rule.channels.all() if channel.enabled]


def _message_texts(alert: Alert, event: str) -> tuple[str, str]:
    if event == NotificationEvent.RESOLVED:
        return templating.resolved_texts(alert.context or {}, alert.title, alert.message)
    rule = alert.rule
    ctx = {**(alert.context or {}), "occurrences": alert.occurrences}
    return templating.texts(alert.kind, ctx, title_template=rule.title_template if rule else "",
                            body_template=rule.body_template if rule else "")


def _queue(alert: Alert, channels: list[NotificationChannel], event: str, status: str, now: datetime) -> list[int]:
    title, body = _message_texts(alert, event)
    rows = [
        Notification(alert=alert, channel=channel, event=event, sequence=alert.occurrences, status=status, title=title[:500],
                     body=body, severity=alert.severity, next_attempt_at=now, created_at=now)
        for channel in channels
    ]
    # ignore_conflicts: the same episode's message to the same channel is queued once, whoever asks.
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    ids = list(Notification.objects.filter(alert=alert, event=event, sequence=alert.occurrences, status=S.PENDING,
                                           channel__in=channels).values_list("pk", flat=True))
    if ids:
        transaction.on_commit(lambda: _enqueue(ids))
    return ids


def queue_fired(alert: Alert, rule: AlertRule, *, now: datetime) -> int:
    channels = _channels(rule)
    if not channels:
        return 0
    if alert.last_notified_at and now - alert.last_notified_at < timedelta(seconds=rule.cooldown_seconds):
        AlertHistory.objects.create(alert=alert, action=HistoryAction.COOLDOWN,
                                    text=f"last notification {int((now - alert.last_notified_at).total_seconds())}s ago")
        return 0
    window = active_window(alert.host_id, alert.container_id or "", now)
    status = S.HELD if window else S.PENDING
    _queue(alert, channels, NotificationEvent.FIRED, status, now)
    Alert.objects.filter(pk=alert.pk).update(last_notified_at=now, notified_state="fired")
    alert.last_notified_at, alert.notified_state = now, "fired"
    if window:
        AlertHistory.objects.create(alert=alert, action=HistoryAction.HELD, text=f"maintenance window {window.name}")
    else:
        AlertHistory.objects.create(alert=alert, action=HistoryAction.NOTIFIED, text=", ".join(c.name for c in channels))
    return len(channels)


def queue_resolved(alert: Alert, rule: AlertRule, *, now: datetime) -> int:
    held = Notification.objects.filter(alert=alert, event=NotificationEvent.FIRED, status=S.HELD)
    if held.exists():
        # Nobody heard about the firing (it was held in a window): nothing to take back.
        held.update(status=S.SKIPPED, last_error="resolved during a maintenance window")
        Alert.objects.filter(pk=alert.pk).update(notified_state="")
        return 0
    if not rule.notify_on_resolve or alert.notified_state != "fired":
        return 0
    channels = _channels(rule)
    Alert.objects.filter(pk=alert.pk).update(notified_state="resolved")
    alert.notified_state = "resolved"
    if not channels:
        return 0
    window = active_window(alert.host_id, alert.container_id or "", now)
    _queue(alert, channels, NotificationEvent.RESOLVED, S.HELD if window else S.PENDING, now)
    return len(channels)


def release_held() -> int:
    """Send what maintenance windows held, once each, when their window is over: firings of
    alerts still open, and resolves."""
    now = timezone.now()
    released = []
    for note in Notification.objects.filter(status=S.HELD).select_related("alert"):
        alert = note.alert
        if alert is None or active_window(alert.host_id, alert.container_id or "", now):
            continue
        if note.event == NotificationEvent.FIRED and alert.state == AlertState.RESOLVED:
            Notification.objects.filter(pk=note.pk, status=S.HELD).update(status=S.SKIPPED, last_error="resolved before the window ended")
            continue
        if Notification.objects.filter(pk=note.pk, status=S.HELD).update(status=S.PENDING, next_attempt_at=now) == 1:
            released.append(note.pk)
            AlertHistory.objects.create(alert=alert, action=HistoryAction.RELEASED, text=f"{note.event} to channel {note.channel_id}")
    if released:
        _enqueue(released)
    return len(released)


def _enqueue(ids: list[int]) -> None:
    from alerts import tasks

    for pk in ids:
        try:
            tasks.send_notification.delay(pk)
        except Exception:  # broker down: the dispatcher's sweep sends it later
            logger.warning("could not enqueue notification %s; the dispatcher will pick it up", pk, exc_info=True)


# ---------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------
def backoff(attempts: int) -> float:
    """Exponential backoff with jitter: base·2^(n-1), capped, then a random point in its upper half."""
    delay = min(settings.DOCKMON_NOTIFY_BACKOFF_MAX_SECONDS, settings.DOCKMON_NOTIFY_BACKOFF_SECONDS * (2 ** max(attempts - 1, 0)))
    return delay / 2 + random.uniform(0, delay / 2)


def _claim(pk: int, now: datetime) -> bool:
    lease = now + timedelta(seconds=settings.DOCKMON_NOTIFY_LEASE_SECONDS)
    return Notification.objects.filter(pk=pk, status=S.PENDING, next_attempt_at__lte=now).update(
        status=S.SENDING, claimed_until=lease, attempts=F("attempts") + 1) == 1


def message_for(note: Notification) -> Message:
    alert = note.alert
    payload = {}
    link = ""
    if alert is not None:
        link = (alert.context or {}).get("link", "")
        payload = {
            "id": alert.pk, "rule": alert.rule_id, "kind": alert.kind, "dedup_key": alert.dedup_key, "state": alert.state,
            "severity": alert.severity, "host": str(alert.host_id) if alert.host_id else None, "container": alert.container_id,
            "subject": alert.subject_name, "occurrences": alert.occurrences, "value": alert.value,
            "first_seen_at": alert.first_seen_at.isoformat(), "last_seen_at": alert.last_seen_at.isoformat(),
            "context": alert.context,
        }
    return Message(title=note.title, body=note.body, severity=note.severity, event=note.event, link=link, alert=payload)


def send(pk: int) -> str | None:
    """Claim and deliver one notification. Returns its new status, or None when another worker
    has it (or it is not due)."""
    now = timezone.now()
    if not _claim(pk, now):
        return None
    note = Notification.objects.select_related("channel", "alert").get(pk=pk)
    channel = note.channel
    if not channel.enabled:
        Notification.objects.filter(pk=pk).update(status=S.SKIPPED, last_error=f"channel disabled: {channel.disabled_reason}".strip())
        return S.SKIPPED
    started = time.monotonic()
    try:
        transport_class(channel.kind)(_config_for(channel)).send(message_for(note))
    except TransportError as exc:
        return _failed(note, _scrubbed(channel, exc), started)
    except Exception as exc:  # a transport bug must not leave the row claimed forever
        logger.error("transport %s crashed: %s", channel.kind, _scrub_text(channel, f"{exc.__class__.__name__}: {exc}"))
        return _failed(note, _scrubbed(channel, TransportError(f"{channel.kind}: {exc.__class__.__name__}: {exc}")), started)
    took = int((time.monotonic() - started) * 1000)
    DeliveryAttempt.objects.create(notification=note, ok=True, duration_ms=took)
    Notification.objects.filter(pk=pk).update(status=S.SENT, sent_at=timezone.now(), last_error="", claimed_until=None)
    NotificationChannel.objects.filter(pk=channel.pk).update(last_sent_at=timezone.now(), last_error="")
    return S.SENT


def _config_for(channel: NotificationChannel) -> dict:
    """The transport's settings; a channel whose stored secrets no encryption key opens any more
    fails here, once per delivery, with a message that says what to do (not disabled: putting
    the old key back brings it back)."""
    if crypto.is_undecryptable(channel.secrets):
        raise TransportError(f"{channel.kind}: " + crypto.undecryptable_message("the stored secrets of this channel", plural=True), retry=False)
    return channel.full_config


def _scrub_text(channel: NotificationChannel, text: str) -> str:
    secret = transport_class(channel.kind).secret_fields if channel.kind else ()
    return scrub(text, secret_values(channel.full_config, secret))


def _scrubbed(channel: NotificationChannel, exc: TransportError) -> TransportError:
    """The same error with every URL cut to its origin and the channel's secrets blanked: the
    text is stored (delivery log, last_error, disabled_reason) and shown by the API and pages."""
    exc.args = (_scrub_text(channel, str(exc)),)
    return exc


def _failed(note: Notification, exc: TransportError, started: float) -> str:
    took = int((time.monotonic() - started) * 1000)
    now = timezone.now()
    DeliveryAttempt.objects.create(notification=note, ok=False, status_code=exc.status_code, error=str(exc)[:2000], duration_ms=took)
    NotificationChannel.objects.filter(pk=note.channel_id).update(last_error=str(exc)[:2000])
    attempts = note.attempts
    if exc.permanent:
        disable(note.channel, str(exc))
        Notification.objects.filter(pk=note.pk).update(status=S.FAILED, last_error=str(exc)[:2000], claimed_until=None)
        return S.FAILED
    if exc.retry and attempts < settings.DOCKMON_NOTIFY_MAX_ATTEMPTS:
        # 429: the service said when; otherwise back off exponentially with jitter.
        delay = min(exc.retry_after, 86400.0) if exc.retry_after is not None else backoff(attempts)
        due = now + timedelta(seconds=delay)
        Notification.objects.filter(pk=note.pk).update(status=S.PENDING, next_attempt_at=due, last_error=str(exc)[:2000],
                                                       claimed_until=None)
        transaction.on_commit(lambda: _retry_later(note.pk, delay))
        return S.PENDING
    Notification.objects.filter(pk=note.pk).update(status=S.FAILED, last_error=str(exc)[:2000], claimed_until=None)
    return S.FAILED


def _retry_later(pk: int, delay: float) -> None:
    from alerts import tasks
    from dockmon_site.celery import app

    if app.conf.task_always_eager:
        return  # eager mode would run it now, before it is due: the dispatcher's sweep sends it
    try:
        tasks.send_notification.apply_async((pk,), countdown=delay)
    except Exception:
        logger.warning("could not schedule the retry of notification %s; the dispatcher will", pk, exc_info=True)


def disable(channel: NotificationChannel, reason: str) -> None:
    """Turn a channel off after a permanent error, and say why."""
    NotificationChannel.objects.filter(pk=channel.pk).update(enabled=False, disabled_reason=reason[:2000])
    logger.warning("notification channel %s disabled: %s", channel.name, reason)
    from containers import bus
    from containers.choices import EventCategory

    bus.emit("alert.channel_disabled", category=EventCategory.ALERT, severity="error",
             message=f"Notification channel {channel.name} was disabled: {reason}",
             data={"channel": channel.pk, "name": channel.name, "reason": reason})


def dispatch_due(*, inline: bool = False, limit: int = 500) -> int:
    """The sweep: put expired claims back, then send (or hand to workers) every due row."""
    now = timezone.now()
    Notification.objects.filter(status=S.SENDING, claimed_until__lt=now).update(status=S.PENDING, claimed_until=None)
    ids = list(Notification.objects.filter(status=S.PENDING, next_attempt_at__lte=now).order_by("next_attempt_at")
               .values_list("pk", flat=True)[:limit])
    if inline:
        for pk in ids:
            send(pk)
    else:
        _enqueue(ids)
    return len(ids)


def send_test(channel: NotificationChannel, user=None) -> dict:
    """Send a test message now and record it; a failing test does not disable the channel."""
    now = timezone.now()
    note = Notification.objects.create(
        channel=channel, event=NotificationEvent.TEST, status=S.SENDING, title="DockMon test notification",
        body=f"This is a test of the notification channel {channel.name}" + (f", sent by {user.username}." if user else "."),
        severity="info", attempts=1, next_attempt_at=now, claimed_until=now + timedelta(seconds=60), created_at=now,
    )
    started = time.monotonic()
    message = message_for(note)
    message.link = templating.link("/alerts/channels/")
    try:
        try:
            transport_class(channel.kind)(_config_for(channel)).send(message)
        except TransportError:
            raise
        except Exception as exc:  # a transport bug: a failed test, not a 500
            raise TransportError(f"{channel.kind}: {exc.__class__.__name__}: {exc}") from exc
    except TransportError as exc:
        exc = _scrubbed(channel, exc)
        took = int((time.monotonic() - started) * 1000)
        DeliveryAttempt.objects.create(notification=note, ok=False, status_code=exc.status_code, error=str(exc)[:2000], duration_ms=took)
        Notification.objects.filter(pk=note.pk).update(status=S.FAILED, last_error=str(exc)[:2000])
        return {"ok": False, "notification": note.pk, "error": str(exc), "status_code": exc.status_code, "permanent": exc.permanent}
    took = int((time.monotonic() - started) * 1000)
    DeliveryAttempt.objects.create(notification=note, ok=True, duration_ms=took)
    Notification.objects.filter(pk=note.pk).update(status=S.SENT, sent_at=timezone.now())
    return {"ok": True, "notification": note.pk, "error": "", "status_code": None, "permanent": False}
