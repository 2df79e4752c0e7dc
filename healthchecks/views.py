"""The Health checks page of the browser UI (data comes from /api/v1/health-checks/)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from accounts.roles import is_administrator
from containers.models import Container
from containers.permissions import has_container_perm, visible_containers


@login_required
def check_list(request):
    # Containers the user may add a check to (needs `change` on the container).
    changeable = visible_containers(request.user, "change", queryset=Container.objects.present()).select_related("host").order_by("name")
    # Checks on these containers may be edited and deleted here (the API allows the same).
    with_checks = visible_containers(request.user, "change").filter(health_checks__isnull=False).values_list("key", flat=True).distinct()
    return render(request, "healthchecks/list.html", {
        "containers": changeable[:1000], "changeable_keys": sorted(set(with_checks)), "nav": "health",
        # Methods other than GET/HEAD are for administrators (the API refuses them to others).
        "can_post": is_administrator(request.user),
    })


def settings_context(request, container) -> dict:
    """The auto-restart row of the container page's settings form (containers/extensions.py)."""
    can_change = has_container_perm(request.user, "change", container)
    return {"can_change": can_change, "editable": can_change}
