"""Browser pages: Alerts (open alerts, history, rules) and Notification channels."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from alerts.api.views import visible_channels, visible_rules
from alerts.choices import AlertState, RuleKind, Severity
from alerts.models import OPEN_STATES, Alert, MaintenanceWindow
from alerts.transports import CHANNEL_KINDS
from dockmon_site.permissions import filter_related

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
    windows = MaintenanceWindow.objects.filter(enabled=True).select_related("host", "container")
    return render(request, "alerts/alerts.html", {
        "alerts": alerts.order_by("-last_seen_at", "-id")[:300],
        "state": state,
        "states": [("open", "Open (not resolved)"), *AlertState.choices, ("all", "All")],
        "rules": rules,
        "windows": filter_related(user, windows) if not user.is_superuser else windows,
        "can_change": user.is_superuser or user.has_perm("alerts.change_alert"),
        "can_edit_rules": user.is_superuser or user.has_perm("alerts.change_alertrule"),
        "kinds": RuleKind.choices,
        "severities": Severity.choices,
        "channels": visible_channels(user),
        "nav": "alerts",
    })


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
