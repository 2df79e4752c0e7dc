"""Template tags of the updates app: the update block of the container page."""

from __future__ import annotations

from django import template
from django.db.models import Q

from containers.permissions import has_container_perm
from updates.history import lineage_keys
from updates.models import ContainerUpdate, UpdateRun
from updates.policies import decide

register = template.Library()


def lineage(container) -> list[str]:
    """Every key of the container across its re-creations (updates.history.lineage_keys)."""
    return lineage_keys(container.key)


@register.inclusion_tag("updates/_container_updates.html", takes_context=True)
def container_updates(context, container):
    user = context["request"].user
    keys = lineage(container)
    runs = list(UpdateRun.objects.filter(Q(old_key__in=keys) | Q(new_key__in=keys)).select_related("requested_by")[:20])
    decision = decide(container)
    return {
        "c": container,
        "row": ContainerUpdate.objects.filter(container_id=container.pk).first(),
        "runs": runs,
        "active": next((r for r in runs if r.is_active), None),
        "can_update": container.removed_at is None and has_container_perm(user, "update", container),
        "decision": decision,
    }
