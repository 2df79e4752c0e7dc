"""Template tags of the updates app: the update block of the container page."""

from __future__ import annotations

from django import template
from django.db.models import Q

from dockmon_site.permissions import has_container_perm
from updates.models import ContainerUpdate, UpdateRun
from updates.policies import decide

register = template.Library()


def lineage(container, depth: int = 20) -> list[str]:
    """The container's key and those of the containers it replaced (newest first)."""
    from containers.models import Container

    keys, current = [container.key], container.key
    for _ in range(depth):
        previous = Container.objects.filter(replaced_by=current).values_list("key", flat=True).first()
        if not previous or previous in keys:
            break
        keys.append(previous)
        current = previous
    return keys


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
