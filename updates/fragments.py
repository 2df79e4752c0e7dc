"""The updates app's parts of the container page, registered in apps.py
(containers/extensions.py): the update panel and the settings rows."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from containers.permissions import has_container_perm
from updates.history import lineage_keys
from updates.models import ContainerUpdate, UpdatePolicy, UpdateRun
from updates.policies import decide


def with_update_available(queryset):
    """update_available from the last update check, in the same query (no per-row lookups)."""
    return queryset.annotate(update_available=Exists(ContainerUpdate.objects.filter(container=OuterRef("pk"), update_available=True)))


def panel_context(request, container) -> dict:
    """Update status, the Update button with live progress, and the update history."""
    keys = lineage_keys(container.key)  # every key of the container across its re-creations
    runs = list(UpdateRun.objects.filter(Q(old_key__in=keys) | Q(new_key__in=keys)).select_related("requested_by")[:20])
    return {
        "c": container,
        "row": ContainerUpdate.objects.filter(container_id=container.pk).first(),
        "runs": runs,
        "active": next((r for r in runs if r.is_active), None),
        "can_update": container.removed_at is None and has_container_perm(request.user, "update", container),
        "decision": decide(container),
    }


def settings_context(request, container) -> dict:
    """The per-container update policy (its own object: /api/v1/update-policies/) and auto-update."""
    can_change = has_container_perm(request.user, "change", container)
    can_update = has_container_perm(request.user, "update", container)
    policy = UpdatePolicy.objects.filter(container=container).values("id", "policy").first()
    return {"policy": policy or {"id": None, "policy": ""}, "can_change": can_change, "can_update": can_update,
            "editable": can_change or can_update}
