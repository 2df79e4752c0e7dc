"""Browser pages: Alerts (open alerts, history, rules) and Notification channels."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone

from alerts.api.views import visible_channels, visible_rules
from alerts.choices import AlertState, RuleKind, Severity
from alerts.models import OPEN_STATES, Alert, MaintenanceWindow
from alerts.transports import CHANNEL_KINDS
from containers.models import Container
from containers.permissions import filter_related, visible_containers, visible_hosts

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}


@login_required
def alert_list(request):
    user = request.user
    state = request.GET.get("state", "open")
    alerts = filter_related(user, Alert.objects.select_related("rule", "acknowledged_by"))
    if state == "open":
        alerts = alerts.filter(state__in=OPEN_STATES)
    elif state in AlertState.values:
        alerts = alerts.filter(state=state)
    rules = visible_rules(user).prefetch_related("channels") if user.has_perm("alerts.view_alertrule") or user.is_superuser else []
    windows = list(_visible_windows(user, MaintenanceWindow.objects.select_related("host", "container")).order_by("name", "id")[:200])
    for window in windows:
        window.weekday_labels = ", ".join(DAYS[d] for d in window.weekdays or [] if 0 <= d < 7)
    return render(request, "alerts/alerts.html", {
        "alerts": alerts.order_by("-last_seen_at", "-id")[:300],
        "state": state,
        "states": [("open", "Open (not resolved)"), *AlertState.choices, ("all", "All")],
        "rules": rules,
        "windows": windows,
        "active_windows": {w.pk for w in windows if w.active_at(timezone.now())},
        "can_add_windows": user.is_superuser or user.has_perm("alerts.add_maintenancewindow"),
        "can_delete_windows": user.is_superuser or user.has_perm("alerts.delete_maintenancewindow"),
        "window_hosts": visible_hosts(user).order_by("name"),
        "window_containers": visible_containers(user, queryset=Container.objects.present()).select_related("host").order_by("name")[:500],
        "weekdays": list(enumerate(DAYS)),
        "can_change": user.is_superuser or user.has_perm("alerts.change_alert"),
        "can_edit_rules": user.is_superuser or user.has_perm("alerts.change_alertrule"),
        "kinds": RuleKind.choices,
        "severities": Severity.choices,
        "channels": visible_channels(user),
        "nav": "alerts",
    })


def _visible_windows(user, queryset):
    """The API's rule: windows of hosts/containers the user sees, and global ones for those who
    may view maintenance windows."""
    if user.is_superuser:
        return queryset
    related = filter_related(user, queryset)
    if user.has_perm("alerts.view_maintenancewindow"):
        return (related | queryset.filter(host__isnull=True, container__isnull=True)).distinct()
    return related


@login_required
def channel_list(request):
    user = request.user
    return render(request, "alerts/channels.html", {
        "channels": visible_channels(user),
        "kinds": CHANNEL_KINDS,
        "can_add": user.is_superuser or user.has_perm("alerts.add_notificationchannel"),
        "can_change": user.is_superuser or user.has_perm("alerts.change_notificationchannel"),
        "nav": "channels",
    })


def open_alerts(user, limit: int = 10) -> list:
    """The dashboard's open alerts (registered in apps.py): the user's visible alerts that are not
    resolved, most severe and most recent first (one query)."""
    rows = (filter_related(user, Alert.objects.filter(state__in=OPEN_STATES))
            .values("id", "title", "message", "severity", "state", "kind", "container_id", "host_id", "subject_name",
                    "occurrences", "last_seen_at")
            .order_by("-last_seen_at", "-id")[:limit])
    rank = {"critical": 0, "error": 1, "warning": 2, "info": 3}
    return sorted(
        ({"id": r["id"], "message": r["title"] or r["message"], "detail": r["message"], "severity": r["severity"], "state": r["state"],
          "kind": r["kind"], "key": r["container_id"] or "", "host": str(r["host_id"] or ""), "subject": r["subject_name"],
          "occurrences": r["occurrences"], "last_seen_at": r["last_seen_at"].isoformat().replace("+00:00", "Z")} for r in rows),
        key=lambda a: rank.get(a["severity"], 9),
    )
