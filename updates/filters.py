"""Query filters of the updates API."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from updates.choices import RunStatus, RunTrigger, UpdateStatus
from updates.models import ContainerUpdate, UpdateRun


class ContainerUpdateFilter(django_filters.FilterSet):
    host = django_filters.UUIDFilter(field_name="container__host_id")
    status = django_filters.MultipleChoiceFilter(choices=UpdateStatus.choices)
    update_available = django_filters.BooleanFilter()
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = ContainerUpdate
        fields = ["host", "status", "update_available", "tracking_mode"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(container__name__icontains=value) | Q(image__icontains=value))


class UpdateRunFilter(django_filters.FilterSet):
    container = django_filters.CharFilter(method="filter_container",
                                          help_text="A container key: its runs across its re-creations (every key it had)")
    host = django_filters.UUIDFilter(field_name="host_id")
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)
    trigger = django_filters.ChoiceFilter(choices=RunTrigger.choices)
    batch = django_filters.CharFilter()

    class Meta:
        model = UpdateRun
        fields = ["container", "host", "status", "trigger", "batch"]

    def filter_container(self, queryset, name, value):
        from updates.history import lineage_keys

        keys = lineage_keys(value)
        return queryset.filter(Q(old_key__in=keys) | Q(new_key__in=keys))
