import django_filters
from django.db.models import Q

from containers.choices import ContainerState, EventCategory, Health, HostStatus, Severity
from containers.models import Container, DockerHost, Event
from dockmon_site.api import UTCDateTimeFilter


class HostFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=HostStatus.choices)
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = DockerHost
        fields = ["status", "enabled"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(url__icontains=value))


class ContainerFilter(django_filters.FilterSet):
    host = django_filters.UUIDFilter(field_name="host_id")
    state = django_filters.ChoiceFilter(choices=ContainerState.choices, method="filter_state")
    health = django_filters.ChoiceFilter(choices=Health.choices)
    tag = django_filters.CharFilter(method="filter_tag")
    search = django_filters.CharFilter(method="filter_search")
    compose_project = django_filters.CharFilter()
    include_removed = django_filters.BooleanFilter(method="filter_noop")

    class Meta:
        model = Container
        fields = ["host", "state", "health", "compose_project"]

    def filter_queryset(self, queryset):
        data = self.form.cleaned_data
        # Removed containers stay in the database for history but are hidden unless asked for.
        if not data.get("include_removed") and data.get("state") != ContainerState.REMOVED:
            queryset = queryset.filter(removed_at__isnull=True)
        return super().filter_queryset(queryset)

    def filter_noop(self, queryset, name, value):
        return queryset

    def filter_state(self, queryset, name, value):
        if value == ContainerState.REMOVED:
            return queryset.filter(removed_at__isnull=False)
        return queryset.filter(state=value)

    def filter_tag(self, queryset, name, value):
        return queryset.filter(tags__name=value).distinct()

    def filter_search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(image__icontains=value) | Q(short_id__istartswith=value) | Q(compose_project__icontains=value)
        )


class EventFilter(django_filters.FilterSet):
    category = django_filters.ChoiceFilter(choices=EventCategory.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    type = django_filters.CharFilter()
    host = django_filters.UUIDFilter(field_name="host_id")
    container = django_filters.CharFilter(field_name="container_key")
    since = UTCDateTimeFilter(field_name="ts", lookup_expr="gte")
    until = UTCDateTimeFilter(field_name="ts", lookup_expr="lt")
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = Event
        fields = ["category", "severity", "type", "host", "container", "since", "until"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(message__icontains=value) | Q(container_name__icontains=value))
