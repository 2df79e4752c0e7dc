"""Admin integration of the object-permission rules in dockmon_site.permissions.

Django's admin only knows model-level permissions; with these, a staff user granted one host
sees the host list with just that host, and may change exactly what the API lets them change.
"""

from __future__ import annotations

from django.contrib import admin
from guardian.admin import ReinforcedGuardedModelAdminMixin

from dockmon_site import csp
from dockmon_site.permissions import object_allowed


class ObjectPermissionAdmin(ReinforcedGuardedModelAdminMixin, admin.ModelAdmin):
    """GuardedModelAdmin whose object-permission screens need guardian's own permissions.

    The plain GuardedModelAdmin lets anyone with model-level change manage every user's grants
    on an object; here only those who may manage grants (Administrators) reach those screens,
    the same rule as /api/v1/permissions/.
    """

    def visible_queryset(self, request):  # pragma: no cover - each admin narrows its own queryset
        raise NotImplementedError

    def obj_perms_manage_view(self, request, object_pk):
        # guardian's page has an empty inline <style> block: allowed by its hash, nothing else
        # (the Content-Security-Policy, dockmon_site/csp.py).
        return csp.allow_style_block(super().obj_perms_manage_view(request, object_pk), "\n")

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

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return super().has_change_permission(request)
        return object_allowed(request.user, "change", obj)

    def has_delete_permission(self, request, obj=None):
        if obj is None:
            return super().has_delete_permission(request)
        return object_allowed(request.user, "delete", obj)
