import ipaddress

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import Q
from rest_framework.exceptions import ValidationError

from accounts.choices import AuditSource
from accounts.models import AuditEntry
from dockmon_site.api import IntegerFilter, UTCDateTimeFilter


class AuditFilter(django_filters.FilterSet):
    user = IntegerFilter(field_name="user_id")
    username = django_filters.CharFilter(field_name="username")
    action = django_filters.CharFilter(field_name="action", lookup_expr="startswith", help_text="Prefix, e.g. container. or host.destroy")
    object_type = django_filters.CharFilter()
    object_id = django_filters.CharFilter()
    source = django_filters.ChoiceFilter(choices=AuditSource.choices)
    method = django_filters.CharFilter(lookup_expr="iexact")
    status_code = IntegerFilter()
    ip = django_filters.CharFilter(method="filter_ip", help_text="IPv4 or IPv6 address")
    since = UTCDateTimeFilter(field_name="ts", lookup_expr="gte")
    until = UTCDateTimeFilter(field_name="ts", lookup_expr="lt")
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = AuditEntry
        fields = ["user", "username", "action", "object_type", "object_id", "source", "method", "status_code", "ip"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(object_repr__icontains=value) | Q(path__icontains=value) | Q(action__icontains=value))

    def filter_ip(self, queryset, name, value):
        # The column is an address type on PostgreSQL: anything else must be a 400, not a query.
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            raise ValidationError({"ip": ["Enter a valid IPv4 or IPv6 address."]}) from None
        return queryset.filter(ip=str(address))


class UserFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(method="filter_search")
    group = IntegerFilter(field_name="groups")

    class Meta:
        model = get_user_model()
        fields = ["is_active", "is_staff", "is_superuser", "group"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(
            Q(username__icontains=value) | Q(email__icontains=value) | Q(first_name__icontains=value) | Q(last_name__icontains=value)
        )


class TokenFilter(django_filters.FilterSet):
    active = django_filters.BooleanFilter(method="filter_active", help_text="Only usable (or only revoked/expired) tokens")

    class Meta:
        from accounts.models import APIToken

        model = APIToken
        fields = ["read_only"]

    def filter_active(self, queryset, name, value):
        usable = queryset.usable()
        return usable if value else queryset.exclude(pk__in=usable.values("pk"))
