"""Alert evaluation: from events, stats samples and disk usage to alerts, and from alerts to
queued notifications.

Every decision about one rule and one subject (a container or a host) happens inside one
transaction that holds the row lock of their ConditionState. Two workers handed the same event
therefore take turns, and the second sees `last_event_id` (or `last_sample_at`) already past it
and does nothing: no duplicate alert, occurrence or notification. The partial unique constraint
on Alert.dedup_key is the backstop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from alerts import notify, regexguard, templating
from alerts.choices import (
    CONDITION_KINDS,
    HOST_KINDS,
    METRIC_KINDS,
    AlertState,
    HistoryAction,
    RuleKind,
    Scope,
    ThresholdUnit,
)
from alerts.models import OPEN_STATES, Alert, AlertHistory, AlertRule, ConditionState, SubjectState
from containers import bus

logger = logging.getLogger(__name__)

K = RuleKind
UPDATE_KINDS = frozenset({K.UPDATE_AVAILABLE, K.UPDATE_SUCCEEDED, K.UPDATE_FAILED})

# Which rule kinds an event type can affect.
EVENT_KINDS: dict[str, frozenset[str]] = {
    "container.state": frozenset({K.CONTAINER_STOPPED, K.CONTAINER_STARTED, K.CONTAINER_RESTARTED, K.RESTART_LOOP,
                                  K.CONTAINER_UNHEALTHY}),
    "container.restart_loop": frozenset({K.RESTART_LOOP}),
    "container.removed": frozenset(k for k in CONDITION_KINDS if k not in HOST_KINDS),
    "health.status": frozenset({K.HEALTH_CHECK_FAILED}),
    "host.status": frozenset({K.HOST_OFFLINE}),
    "update.available": frozenset({K.UPDATE_AVAILABLE}),
    "update.succeeded": frozenset({K.UPDATE_SUCCEEDED, K.UPDATE_AVAILABLE}),
    "update.failed": frozenset({K.UPDATE_FAILED}),
    "update.rolled_back": frozenset({K.UPDATE_FAILED}),
}
# How recently a container must have exited for a start to count as a restart.
RESTART_WINDOW = timedelta(seconds=60)


# ---------------------------------------------------------------------------
# Rules and subjects
# ---------------------------------------------------------------------------
@dataclass
class LoadedRule:
    rule: AlertRule
    host_ids: set[str]
    container_keys: set[str]
    container_host_ids: set[str]
    tag_ids: set[int]


@dataclass
class Subject:
    scope_type: str  # container | host
    scope_id: str
    name: str
    host_id: str
    host_name: str
    container: object = None
    tag_ids: set[int] = field(default_factory=set)

    @property
    def key(self) -> str:
        return f"{self.scope_type}:{self.scope_id}"

    @property
    def container_key(self) -> str:
        return self.scope_id if self.scope_type == "container" else ""

    @property
    def link(self) -> str:
        if self.scope_type == "container":
            return templating.link(f"/containers/{self.scope_id}/")
        return templating.link(f"/hosts/{self.scope_id}/")


def load_rules(kinds) -> list[LoadedRule]:
    rules = list(AlertRule.objects.filter(enabled=True, kind__in=list(kinds)).prefetch_related("hosts", "containers", "tags"))
    return [
        LoadedRule(
            rule=r,
            host_ids={str(h.pk) for h in r.hosts.all()},
            container_keys={c.key for c in r.containers.all()},
            container_host_ids={str(c.host_id) for c in r.containers.all()},
            tag_ids={t.pk for t in r.tags.all()},
        )
        for r in rules
    ]


def container_subject(container) -> Subject:
    tag_ids = {link.tag_id for link in container.tag_links.all()}
    return Subject("container", container.key, container.name, str(container.host_id), container.host.name, container, tag_ids)


def host_subject(host) -> Subject:
    return Subject("host", str(host.pk), host.name, str(host.pk), host.name)


def matches(loaded: LoadedRule, subject: Subject) -> bool:
    rule = loaded.rule
    if (rule.kind in HOST_KINDS) != (subject.scope_type == "host"):
        return False
    if rule.scope == Scope.HOSTS:
        ok = subject.host_id in loaded.host_ids
    elif rule.scope == Scope.CONTAINERS:
        ok = subject.scope_id in loaded.container_keys if subject.scope_type == "container" else subject.host_id in loaded.container_host_ids
    elif rule.scope == Scope.TAGS:
        ok = bool(subject.tag_ids & loaded.tag_ids)
    else:
        ok = True
    return ok and regexguard.matches(rule.name_regex, subject.name)


def _suppressed(subject: Subject, now: datetime) -> bool:
    if subject.scope_type != "container":
        return False
    return SubjectState.objects.filter(container_key=subject.scope_id, suppressed_until__gt=now).exists()


# ---------------------------------------------------------------------------
# Decisions: what one event means for one rule
# ---------------------------------------------------------------------------
BREACH, CLEAR, HIT, FIRE = "breach", "clear", "hit", "fire"


def decide(kind: str, event, subject: Subject) -> tuple[str, dict] | None:
    """(decision, template context) or None when the event says nothing about this kind."""
    data = event.data or {}
    etype = event.type
    if etype == "container.removed":
        return CLEAR, {"state": "removed"}
    if etype == "container.state":
        state, previous = data.get("state", ""), data.get("previous_state", "")
        ctx = {"state": state, "previous_state": previous, "exit_code": data.get("exit_code"), "health": data.get("health", "")}
        if kind == K.CONTAINER_STOPPED:
            if state in ("exited", "dead") and previous != state:
                return BREACH, ctx
            if state == "running":
                return CLEAR, ctx
        elif kind == K.CONTAINER_STARTED:
            if state == "running" and previous not in ("running", "paused"):
                return HIT, ctx
        elif kind in (K.CONTAINER_RESTARTED, K.RESTART_LOOP):
            if state == "running" and previous in ("exited", "dead", "restarting") and _recently_exited(subject, event.ts):
                return HIT, ctx
        elif kind == K.CONTAINER_UNHEALTHY:
            if data.get("health") == "unhealthy" and state == "running":
                return BREACH, ctx
            if data.get("health") == "healthy" or state in ("exited", "dead"):
                return CLEAR, ctx
        return None
    if etype == "container.restart_loop":
        # Auto-restart gave up: `attempts` restarts were made (the event fires once per give-up).
        return FIRE, {"error": data.get("reason", ""), "exit_code": None, "restarts": data.get("attempts")}
    if etype == "health.status":
        ctx = {"error": data.get("error") or event.message, "state": data.get("status", "")}
        if data.get("status") == "unhealthy":
            return BREACH, ctx
        if data.get("status") == "healthy":
            return CLEAR, ctx
        return None
    if etype == "host.status":
        ctx = {"state": data.get("status", ""), "previous_state": data.get("previous", ""), "error": data.get("error", "")}
        if data.get("status") in ("offline", "error"):
            return BREACH, ctx
        if data.get("status") == "online":
            return CLEAR, ctx
        return None
    if etype == "update.succeeded" and data.get("up_to_date"):
        # The executor found nothing to do: no "updated" alert. It does show that no update is
        # available, so an open update_available alert clears.
        return (CLEAR, {"image": data.get("image", "")}) if kind == K.UPDATE_AVAILABLE else None
    if etype.startswith("update."):
        # update.available (updates app) names versions/digests as current_*/latest_*; the
        # executor's update.* events say from_digest/to_digest and put the reason in the message.
        ctx = {"image": data.get("image", ""),
               "current_version": data.get("current_version") or (data.get("current_digest") or data.get("from_digest") or "")[:19],
               "latest_version": data.get("latest_version") or (data.get("latest_digest") or data.get("to_digest") or "")[:19],
               "error": data.get("error") or (event.message if etype in ("update.failed", "update.rolled_back") else "")}
        if kind == K.UPDATE_AVAILABLE:
            return (BREACH, ctx) if etype == "update.available" else (CLEAR, ctx)
        return HIT, ctx
    return None


def _recently_exited(subject: Subject, ts: datetime) -> bool:
    finished = getattr(subject.container, "finished_at", None)
    return finished is not None and ts - finished <= RESTART_WINDOW


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------
def evaluate_event(event_id: int) -> int:
    """Apply one logged event to every enabled rule it concerns. Returns decisions applied."""
    from containers.models import Container, DockerHost, Event

    event = Event.objects.filter(pk=event_id).first()
    if event is None or event.type not in EVENT_KINDS:
        return 0
    rules = load_rules(EVENT_KINDS[event.type])
    if not rules:
        return 0
    if event.container_key:
        container = Container.objects.select_related("host").prefetch_related("tag_links").filter(pk=event.container_key).first()
        if container is None:
            return 0
        subject = container_subject(container)
    elif event.host_id:
        host = DockerHost.objects.filter(pk=event.host_id).first()
        if host is None:
            return 0
        subject = host_subject(host)
    else:
        return 0
    applied = 0
    for loaded in rules:
        if not matches(loaded, subject):
            continue
        if loaded.rule.kind == K.RESTART_LOOP and event.type == "container.state" and loaded.rule.occurrences < 2:
            # One restart is no loop: counted restarts need occurrences >= 2 (in the window);
            # otherwise the rule fires when auto-restart gives up (container.restart_loop).
            continue
        decision = decide(loaded.rule.kind, event, subject)
        if decision is None:
            continue
        what, ctx = decision
        applied += apply(loaded.rule, subject, what, ctx, ts=event.ts, event_id=event.pk)
    return applied


def evaluate_samples(host_id: str, t: datetime, samples: list) -> int:
    """Metric rules against one stats cycle of one host: samples = [[key, cpu%, mem bytes, mem limit], ...].
    Containers of the host that were not sampled (stopped) clear their metric conditions."""
    from containers.models import Container

    rules = load_rules(METRIC_KINDS)
    if not rules:
        return 0
    by_key = {row[0]: row for row in samples}
    containers = {c.key: c for c in Container.objects.present().filter(host_id=host_id).select_related("host").prefetch_related("tag_links")}
    existing = {(s.rule_id, s.subject) for s in ConditionState.objects.filter(rule__in=[r.rule for r in rules], host_id=host_id)}
    open_subjects = set(Alert.objects.filter(rule__in=[r.rule for r in rules], host_id=host_id, state__in=OPEN_STATES)
                        .values_list("rule_id", "scope_id"))
    applied = 0
    for loaded in rules:
        rule = loaded.rule
        for key, container in containers.items():
            subject = container_subject(container)
            if not matches(loaded, subject):
                continue
            known = (rule.pk, subject.key) in existing or (rule.pk, key) in open_subjects
            row = by_key.get(key)
            if row is None:
                if known:
                    applied += apply(rule, subject, CLEAR, {"state": container.state}, ts=t, sample_at=t)
                continue
            value, unit = _metric(rule, row)
            if value is None or rule.threshold is None:
                continue
            ctx = {"value": round(value, 1), "threshold": rule.threshold, "unit": unit, "state": container.state}
            if value > rule.threshold:
                applied += apply(rule, subject, BREACH, ctx, ts=t, sample_at=t, value=value)
            elif known and value <= rule.effective_clear_threshold:
                applied += apply(rule, subject, CLEAR, ctx, ts=t, sample_at=t, value=value)
    return applied


def _metric(rule: AlertRule, row) -> tuple[float | None, str]:
    """The sample's value in the rule's threshold unit, and that unit's label."""
    _, cpu, mem, limit = row[:4]
    if rule.kind == K.CPU_HIGH:
        return (float(cpu) if cpu is not None else None), "%"
    if rule.threshold_unit == ThresholdUnit.PERCENT:
        return (100.0 * float(mem or 0) / float(limit) if limit else None), "%"
    return float(mem or 0) / rule.threshold_multiplier, UNIT_LABELS.get(rule.threshold_unit, " B")


UNIT_LABELS = {"bytes": " B", "mib": " MiB", "gib": " GiB"}


def evaluate_disk(usage_id: int) -> int:
    from containers.models import DiskUsage

    usage = DiskUsage.objects.select_related("host").filter(pk=usage_id).first()
    if usage is None:
        return 0
    subject = host_subject(usage.host)
    applied = 0
    for loaded in load_rules({K.DISK_HIGH}):
        rule = loaded.rule
        if rule.threshold is None or not matches(loaded, subject):
            continue
        multiplier = rule.threshold_multiplier
        total = float(usage.total_size)
        unit = UNIT_LABELS.get(rule.threshold_unit, " B")
        ctx = {"value": round(total / multiplier, 1), "threshold": rule.threshold, "unit": unit}
        if total > rule.threshold * multiplier:
            applied += apply(rule, subject, BREACH, ctx, ts=usage.ts, sample_at=usage.ts, value=total / multiplier)
        elif total <= (rule.effective_clear_threshold or 0) * multiplier:
            applied += apply(rule, subject, CLEAR, ctx, ts=usage.ts, sample_at=usage.ts, value=total / multiplier)
    return applied


def evaluate_due() -> int:
    """Fire conditions whose duration has passed since the breach began (non-metric kinds; metric
    kinds fire from their next sample, so stale stats never fire anything)."""
    from containers.models import Container, DockerHost

    now = timezone.now()
    fired = 0
    states = (ConditionState.objects.filter(first_breach_at__isnull=False, rule__enabled=True, rule__duration_seconds__gt=0)
              .exclude(rule__kind__in=[*METRIC_KINDS, K.DISK_HIGH]).select_related("rule"))
    for state in states:
        if state.first_breach_at + timedelta(seconds=state.rule.duration_seconds) > now:
            continue
        scope_type, _, scope_id = state.subject.partition(":")
        if scope_type == "container":
            container = Container.objects.select_related("host").prefetch_related("tag_links").filter(pk=scope_id).first()
            subject = container_subject(container) if container else None
        else:
            host = DockerHost.objects.filter(pk=scope_id).first()
            subject = host_subject(host) if host else None
        if subject is None:
            ConditionState.objects.filter(pk=state.pk).delete()
            continue
        fired += apply(state.rule, subject, "due", dict(state.context or {}), ts=now)
    return fired


# ---------------------------------------------------------------------------
# Applying a decision (locked per rule and subject)
# ---------------------------------------------------------------------------
def _locked_state(rule: AlertRule, subject: Subject) -> ConditionState:
    state, _ = ConditionState.objects.get_or_create(rule=rule, subject=subject.key, defaults={"host_id": subject.host_id})
    return ConditionState.objects.select_for_update().get(pk=state.pk)


def apply(rule: AlertRule, subject: Subject, what: str, ctx: dict, *, ts: datetime, event_id: int | None = None,
          sample_at: datetime | None = None, value: float | None = None) -> int:
    """Apply one decision. Returns 1 when it changed something, 0 when it was a no-op."""
    now = timezone.now()
    if what != CLEAR and rule.suppress_during_update and rule.kind not in UPDATE_KINDS and _suppressed(subject, now):
        return 0
    with transaction.atomic():
        state = _locked_state(rule, subject)
        # Idempotence: work already applied (a re-delivered task, a second worker) is skipped.
        if event_id is not None:
            if state.last_event_id >= event_id:
                return 0
            state.last_event_id = event_id
        if sample_at is not None:
            if state.last_sample_at is not None and state.last_sample_at >= sample_at:
                return 0
            state.last_sample_at = sample_at
        if value is not None:
            state.last_value = value
        full_ctx = _context(rule, subject, {**(state.context or {}), **ctx})
        changed = 0
        if what == CLEAR:
            state.first_breach_at = None
            if rule.auto_resolve:
                alert = _open_alert(rule, subject)
                if alert is not None:
                    resolve(alert, reason="the condition cleared", ctx=full_ctx)
                    changed = 1
        elif what == BREACH:
            new_transition = event_id is not None
            if state.first_breach_at is None:
                state.first_breach_at = ts
            state.context = {k: v for k, v in ctx.items() if _json_safe(v)}
            if ts - state.first_breach_at >= timedelta(seconds=rule.duration_seconds):
                changed = fire(rule, subject, full_ctx, now=now, new_occurrence=new_transition, value=value)
        elif what == "due":
            if state.first_breach_at is not None and now - state.first_breach_at >= timedelta(seconds=rule.duration_seconds):
                if _open_alert(rule, subject) is None:
                    changed = fire(rule, subject, full_ctx, now=now, new_occurrence=True, value=value)
        elif what in (HIT, FIRE):
            window = rule.window_seconds
            hits = [h for h in (state.hits or []) if not window or _parse(h) > ts - timedelta(seconds=window)]
            hits.append(ts.isoformat())
            state.hits = hits[-max(rule.occurrences, 1) * 2:]
            full_ctx["hits"] = len(hits)  # occurrences within the window (the alert counts its own)
            if what == FIRE or len(hits) >= max(rule.occurrences, 1):
                changed = fire(rule, subject, full_ctx, now=now, new_occurrence=True, value=value)
        state.save()
        return changed


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _json_safe(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _context(rule: AlertRule, subject: Subject, extra: dict) -> dict:
    ctx = {
        "kind": rule.kind, "rule": rule.name, "severity": rule.severity, "event": "fired",
        "container": subject.name if subject.scope_type == "container" else "", "container_key": subject.container_key,
        "host": subject.host_name, "link": subject.link, "state": "", "previous_state": "", "exit_code": None, "health": "",
        "value": None, "threshold": rule.threshold, "unit": "", "current_version": "", "latest_version": "", "image": "",
        "error": "",
    }
    if subject.container is not None:
        ctx["image"] = getattr(subject.container, "image", "")
    ctx.update({k: v for k, v in extra.items() if v is not None or k not in ctx})
    return ctx


def dedup_key(rule: AlertRule, subject: Subject) -> str:
    return f"{rule.pk}|{rule.kind}|{subject.scope_type}:{subject.scope_id}"


def _open_alert(rule: AlertRule, subject: Subject) -> Alert | None:
    return Alert.objects.select_for_update().filter(dedup_key=dedup_key(rule, subject), state__in=OPEN_STATES).first()


def fire(rule: AlertRule, subject: Subject, ctx: dict, *, now: datetime, new_occurrence: bool, value: float | None = None) -> int:
    """Open (or count an occurrence on) the alert of this rule and subject; queue notifications."""
    key = dedup_key(rule, subject)
    alert = _open_alert(rule, subject)
    cooldown = timedelta(seconds=rule.cooldown_seconds)
    if alert is not None:
        alert.last_seen_at = now
        alert.value = value if value is not None else alert.value
        if not new_occurrence:
            alert.save(update_fields=["last_seen_at", "value"])
            return 0
        alert.occurrences += 1
        alert.context = _safe(ctx | {"occurrences": alert.occurrences})
        alert.save(update_fields=["last_seen_at", "value", "occurrences", "context"])
        AlertHistory.objects.create(alert=alert, action=HistoryAction.OCCURRED, text=f"occurrence {alert.occurrences}")
        _announce(alert, "alert.fired")
        if alert.state == AlertState.OPEN:
            notify.queue_fired(alert, rule, now=now)
        return 1
    # A flapping condition (resolved, then back within the cooldown) reopens its last alert and
    # counts an occurrence instead of starting a new alert and a new round of notifications.
    recent = (Alert.objects.select_for_update().filter(dedup_key=key, state=AlertState.RESOLVED, resolved_at__gte=now - cooldown)
              .order_by("-resolved_at").first())
    if recent is not None:
        recent.state = AlertState.OPEN
        recent.resolved_at = None
        recent.resolved_by = None
        recent.occurrences += 1
        recent.last_seen_at = now
        recent.value = value
        recent.context = _safe(ctx | {"occurrences": recent.occurrences})
        recent.save()
        AlertHistory.objects.create(alert=recent, action=HistoryAction.REOPENED,
                                    text=f"occurrence {recent.occurrences} within the cooldown of {rule.cooldown_seconds}s")
        _announce(recent, "alert.fired")
        notify.queue_fired(recent, rule, now=now)
        return 1
    ctx = ctx | {"occurrences": 1}
    title, message = templating.texts(rule.kind, ctx, title_template=rule.title_template, body_template=rule.body_template)
    alert = Alert.objects.create(
        rule=rule, kind=rule.kind, dedup_key=key, scope_type=subject.scope_type, scope_id=subject.scope_id,
        host_id=subject.host_id or None, container_id=subject.container_key or None, subject_name=subject.name,
        severity=rule.severity, title=title[:500], message=message, value=value, context=_safe(ctx),
        first_seen_at=now, last_seen_at=now,
    )
    AlertHistory.objects.create(alert=alert, action=HistoryAction.FIRED, text=message[:2000])
    _announce(alert, "alert.fired")
    notify.queue_fired(alert, rule, now=now)
    return 1


def _safe(ctx: dict) -> dict:
    return {k: v for k, v in ctx.items() if _json_safe(v)}


def resolve(alert: Alert, *, user=None, reason: str = "", ctx: dict | None = None) -> bool:
    """Resolve an open alert (call inside a transaction); queue the resolve notifications."""
    if alert.state == AlertState.RESOLVED:
        return False
    now = timezone.now()
    updated = Alert.objects.filter(pk=alert.pk).exclude(state=AlertState.RESOLVED).update(
        state=AlertState.RESOLVED, resolved_at=now, resolved_by=user, snoozed_until=None)
    if updated != 1:
        return False
    alert.state, alert.resolved_at, alert.resolved_by = AlertState.RESOLVED, now, user
    AlertHistory.objects.create(alert=alert, action=HistoryAction.RESOLVED, user=user, text=reason)
    _announce(alert, "alert.resolved")
    if alert.rule is not None:
        notify.queue_resolved(alert, alert.rule, now=now)
    return True


def _announce(alert: Alert, type_: str) -> None:
    from containers.choices import EventCategory

    severity = "info" if type_ == "alert.resolved" else alert.severity
    verb = "resolved" if type_ == "alert.resolved" else "fired"
    bus.emit(
        type_, category=EventCategory.ALERT, severity=severity, host=alert.host_id, container=alert.container_id or "",
        message=f"Alert {verb}: {alert.title}",
        data={"alert": alert.pk, "rule": alert.rule_id, "kind": alert.kind, "state": alert.state, "dedup_key": alert.dedup_key,
              "occurrences": alert.occurrences, "title": alert.title, "name": alert.subject_name, "alert_severity": alert.severity},
    )


# ---------------------------------------------------------------------------
# People's actions and housekeeping
# ---------------------------------------------------------------------------
def acknowledge(alert: Alert, user) -> bool:
    with transaction.atomic():
        now = timezone.now()
        if Alert.objects.filter(pk=alert.pk, state__in=(AlertState.OPEN, AlertState.SNOOZED)).update(
                state=AlertState.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=user, snoozed_until=None) != 1:
            return False
        AlertHistory.objects.create(alert=alert, action=HistoryAction.ACKNOWLEDGED, user=user)
        return True


def snooze(alert: Alert, user, until: datetime) -> bool:
    with transaction.atomic():
        if Alert.objects.filter(pk=alert.pk, state__in=OPEN_STATES).update(state=AlertState.SNOOZED, snoozed_until=until) != 1:
            return False
        AlertHistory.objects.create(alert=alert, action=HistoryAction.SNOOZED, user=user, text=f"until {until.isoformat()}")
        return True


def resolve_by_user(alert: Alert, user) -> bool:
    with transaction.atomic():
        locked = Alert.objects.select_for_update(of=("self",)).select_related("rule").filter(pk=alert.pk).first()
        return bool(locked) and resolve(locked, user=user, reason="resolved by hand")


def end_snoozes() -> int:
    now = timezone.now()
    ended = 0
    for alert in Alert.objects.filter(state=AlertState.SNOOZED, snoozed_until__lte=now):
        if Alert.objects.filter(pk=alert.pk, state=AlertState.SNOOZED).update(state=AlertState.OPEN, snoozed_until=None) == 1:
            AlertHistory.objects.create(alert=alert, action=HistoryAction.UNSNOOZED)
            ended += 1
    return ended


def suppress_for_update(container_key: str, *, until: datetime | None, reason: str = "") -> None:
    """update.started marks the container (alerts about it are not raised until the update ends)."""
    SubjectState.objects.update_or_create(container_key=container_key, defaults={"suppressed_until": until, "reason": reason[:200]})


def follow_recreated_container(sender, old_key: str, new_key: str, **kwargs) -> None:
    """Receiver of containers.signals.container_rekeyed: inside the rekey transaction, move
    alerts, condition states, suppression, rule scopes and maintenance windows to the new key."""
    from alerts.models import MaintenanceWindow

    for alert in Alert.objects.filter(container_id=old_key):
        new_dedup = alert.dedup_key.replace(f"|container:{old_key}", f"|container:{new_key}")
        if alert.is_open and Alert.objects.filter(dedup_key=new_dedup, state__in=OPEN_STATES).exists():
            resolve(alert, reason="the container was recreated")
        Alert.objects.filter(pk=alert.pk).update(container_id=new_key, scope_id=new_key, dedup_key=new_dedup)
    for state in ConditionState.objects.filter(subject=f"container:{old_key}"):
        if ConditionState.objects.filter(rule_id=state.rule_id, subject=f"container:{new_key}").exists():
            state.delete()
        else:
            ConditionState.objects.filter(pk=state.pk).update(subject=f"container:{new_key}")
    if not SubjectState.objects.filter(container_key=new_key).exists():
        SubjectState.objects.filter(container_key=old_key).update(container_key=new_key)
    through = AlertRule.containers.through
    for link in through.objects.filter(container_id=old_key):
        through.objects.get_or_create(alertrule_id=link.alertrule_id, container_id=new_key)
        link.delete()
    MaintenanceWindow.objects.filter(container_id=old_key).update(container_id=new_key)
