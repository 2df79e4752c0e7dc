"""The base of every API viewset over hosts, containers and what belongs to them."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.filters import OrderingFilter

from accounts.api.base import AuditedViewMixin
from containers.permissions import ObjectPermissions, permitted


class VisibleViewSetMixin(AuditedViewMixin):
    """What a user may not view does not exist for them (404); what they may view but not act
    on is 403 (containers/permissions.py).

    Every list and detail queryset goes through `filter_permitted(queryset)` before any other
    filter: by default the rule for hosts and containers and for rows that belong to one; a
    viewset whose rows follow another rule overrides it. `permission_classes` (ObjectPermissions
    unless a viewset names its own) come after the default ones from settings, which always
    apply (AuditedViewMixin). An @action may name the right it needs in `required_action`
    ("operate", "update"...); otherwise the method decides.
    """

    required_action: str | None = None
    permission_classes = [ObjectPermissions]
    filter_backends = [DjangoFilterBackend, OrderingFilter]

    def filter_queryset(self, queryset):
        return super().filter_queryset(self.filter_permitted(queryset))

    def filter_permitted(self, queryset):
        return permitted(self.request.user, queryset)
