"""Query filters of the alerts API."""

from __future__ import annotations

import django_filters

from alerts.choices import AlertState, RuleKind, Severity
from alerts.models import OPEN_STATES, Alert, AlertRule


class AlertRuleFilter(django_filters.FilterSet):
    kind = django_filters.MultipleChoiceFilter(choices=RuleKind.choices)

    class Meta:
        model = AlertRule
        fields = ["kind", "enabled", "scope", "severity"]


class AlertFilter(django_filters.FilterSet):
    state = django_filters.CharFilter(method="filter_state", help_text="open (= not resolved: open, acknowledged, snoozed), "
                                                                       "acknowledged, snoozed, resolved; comma-separated")
    kind = django_filters.MultipleChoiceFilter(choices=RuleKind.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    container = django_filters.CharFilter(field_name="container_id")
    since = django_filters.IsoDateTimeFilter(field_name="last_seen_at", lookup_expr="gte")

    class Meta:
        model = Alert
        fields = ["state", "kind", "severity", "host", "container", "rule", "since"]

    def filter_state(self, queryset, name, value):
        states = set()
        for part in (p.strip() for p in value.split(",")):
            if part == "open":
                states.update(OPEN_STATES)  # "open" = not resolved (acknowledged and snoozed too)
            elif part == "firing":
                states.add(AlertState.OPEN)
            elif part in AlertState.values:
                states.add(part)
        return queryset.filter(state__in=states)
