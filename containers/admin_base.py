"""Admin integration of the object-permission rules in containers/permissions.py.

Django's admin only knows model-level permissions; with these, a staff user granted one host
sees the host list with just that host, and may change exactly what the API lets them change.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q
from guardian.admin import ReinforcedGuardedModelAdminMixin

from accounts.roles import is_signed_in
from containers.models import Container, DockerHost
from containers.permissions import (
    container_perm,
    has_container_perm,
    host_perm,
    object_allowed,
    object_grants,
    visible_containers,
    visible_hosts,
)
from dockmon_site import csp


def holds_somewhere(user, action: str) -> bool:
    """May `user` do `action` (operate, update, change...) on at least one host or container:
    as a superuser, by the model permission (a role) or by an object grant?

    What an admin action on host- or container-bound rows declares (`has_<x>_permission`), so
    that people who may only view do not get the action offered; the action still checks every
    selected row, because holding a right somewhere is not holding it on each row.
    """
    if not is_signed_in(user):
        return False
    if user.is_superuser or user.has_perm(host_perm(action)) or user.has_perm(container_perm(action)):
        return True
    # Asked once per action on a changelist: remembered on the request's user object.
    known = user.__dict__.setdefault("_dockmon_holds_somewhere", {})
    if action not in known:
        hosts, keys = object_grants(user, action)
        known[action] = bool(hosts or keys)
    return known[action]


def visible_choices(visible):
    """A list filter for a relation (a host, container, channel...) whose choices are only the
    objects `visible(user)` returns: Django's own filter lists every row of the related table,
    which would name hosts and containers the user may not see."""

    class VisibleRelatedFieldListFilter(admin.RelatedFieldListFilter):
        def field_choices(self, field, request, model_admin):
            ordering = self.field_admin_ordering(field, request, model_admin)
            limit = None if request.user.is_superuser else Q(pk__in=visible(request.user).values("pk"))
            return field.get_choices(include_blank=False, ordering=ordering, limit_choices_to=limit)

    VisibleRelatedFieldListFilter.__name__ = f"Visible{getattr(visible, '__name__', 'objects').title().replace('_', '')}Filter"
    return VisibleRelatedFieldListFilter


# The hosts and containers the user may view; filters of other relations are made where the
# visibility rule of that model lives (e.g. notification channels in alerts/admin.py).
VisibleHostFilter = visible_choices(visible_hosts)
VisibleContainerFilter = visible_choices(visible_containers)


class VisibilityAdmin(admin.ModelAdmin):
    """The one admin base for rows that follow containers/permissions.py: a staff user granted
    one host sees that host (and what belongs to it) without any model permission, and a row
    is viewable by object_allowed."""

    def visible_queryset(self, request):  # pragma: no cover - each admin narrows its own queryset
        raise NotImplementedError

    def _any_visible(self, request) -> bool:
        cache_name = f"_dockmon_visible_{self.model._meta.model_name}"
        if not hasattr(request, cache_name):
            setattr(request, cache_name, self.visible_queryset(request).exists())
        return getattr(request, cache_name)

    def has_module_permission(self, request):
        return super().has_module_permission(request) or self._any_visible(request)

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return super().has_view_permission(request) or self._any_visible(request)
        return object_allowed(request.user, "view", obj)


class ObjectPermissionAdmin(ReinforcedGuardedModelAdminMixin, VisibilityAdmin):
    """GuardedModelAdmin whose object-permission screens need guardian's own permissions.

    The plain GuardedModelAdmin lets anyone with model-level change manage every user's grants
    on an object; here only those who may manage grants (Administrators) reach those screens,
    the same rule as /api/v1/permissions/.
    """

    # What the user must hold on a host or container to point a row of this admin at it (a
    # select, a raw-id field, a many-to-many): at least viewing it; admins of rows that act on
    # their container ask for more (e.g. "change" for a health check).
    related_action = "view"

    def _limit_related(self, db_field, request, kwargs) -> None:
        if request.user.is_superuser:
            return
        if db_field.related_model is DockerHost:
            kwargs["queryset"] = visible_hosts(request.user, self.related_action)
        elif db_field.related_model is Container:
            kwargs["queryset"] = visible_containers(request.user, self.related_action)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        self._limit_related(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        self._limit_related(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def obj_perms_manage_view(self, request, object_pk):
        # guardian's page has an empty inline <style> block: allowed by its hash, nothing else
        # (the Content-Security-Policy, dockmon_site/csp.py).
        return csp.allow_style_block(super().obj_perms_manage_view(request, object_pk), "\n")

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return super().has_change_permission(request)
        return object_allowed(request.user, "change", obj)

    def has_delete_permission(self, request, obj=None):
        if obj is None:
            return super().has_delete_permission(request)
        return object_allowed(request.user, "delete", obj)


class ContainerScopedAdmin(ObjectPermissionAdmin):
    """Rows that belong to one container (health checks, update records...): visible and
    changeable exactly as the container is (containers/permissions.py)."""

    # Where the row's container is: a field, or a path through one (e.g. "health_check__container").
    container_path = "container"
    # A row acts on its container (probes it, restarts it, updates it): pointing one at a
    # container needs `change` on that container, as in the API.
    related_action = "change"

    def _visible(self, request, queryset):
        return queryset.filter(**{f"{self.container_path}__in": visible_containers(request.user).values("pk")})

    def _container(self, obj):
        for part in self.container_path.split("__"):
            obj = getattr(obj, part)
        return obj

    def visible_queryset(self, request):
        return self._visible(request, self.model.objects.all())

    def get_queryset(self, request):
        return self._visible(request, super().get_queryset(request))

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return super().has_view_permission(request)
        return has_container_perm(request.user, "view", self._container(obj))

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return super().has_change_permission(request) or self._any_visible(request)
        return has_container_perm(request.user, "change", self._container(obj))

    def has_delete_permission(self, request, obj=None):
        if obj is None:
            return super().has_delete_permission(request)
        return has_container_perm(request.user, "change", self._container(obj))

    def _changeable(self, request, queryset):
        return [obj for obj in queryset if has_container_perm(request.user, "change", self._container(obj))]

    # What row-changing actions declare: the right on some container (each selected row is
    # checked again, e.g. by _changeable).
    def has_change_some_permission(self, request):
        return holds_somewhere(request.user, "change")

    def has_update_some_permission(self, request):
        return holds_somewhere(request.user, "update")
