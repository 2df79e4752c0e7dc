"""Query filters of the healthchecks API."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from healthchecks.choices import CheckStatus
from healthchecks.models import AutoRestartConfig, HealthCheck


class HealthCheckFilter(django_filters.FilterSet):
    container = django_filters.CharFilter(field_name="container_id")
    host = django_filters.UUIDFilter(field_name="container__host_id")
    status = django_filters.MultipleChoiceFilter(choices=CheckStatus.choices)
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = HealthCheck
        fields = ["container", "host", "status", "enabled", "auto_restart"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(url__icontains=value) | Q(container__name__icontains=value))


class AutoRestartFilter(django_filters.FilterSet):
    host = django_filters.UUIDFilter(field_name="container__host_id")
    restart_loop = django_filters.BooleanFilter(field_name="gave_up_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = AutoRestartConfig
        fields = ["host", "enabled", "restart_loop"]
