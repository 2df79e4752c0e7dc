"""The Updates page: updates available (with a live check), bulk update, and the runs history."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.shortcuts import render

from containers.models import Container
from containers.permissions import visible_containers
from updates.api.views import runs_visible_to
from updates.history import runs_of
from updates.models import ContainerUpdate, UpdateRun
from updates.policies import decide_many

ROW_LIMIT = 500


@login_required
def update_list(request):
    user = request.user
    show_all = request.GET.get("all") == "1"
    container_key = request.GET.get("container", "")
    rows = ContainerUpdate.objects.filter(
        container__in=visible_containers(user, queryset=Container.objects.present()).values("pk")
    ).select_related("container", "container__host")
    if not show_all:
        rows = rows.filter(Q(update_available=True) | Q(status="registry_error"))
    rows = list(rows.order_by("-update_available", "container__host__name", "container__name")[:ROW_LIMIT])
    decisions = decide_many([r.container for r in rows])
    updatable = set(
        visible_containers(user, "update", queryset=Container.objects.filter(pk__in=[r.container_id for r in rows])).values_list("pk", flat=True)
    )
    base = UpdateRun.objects.select_related("requested_by", "host")
    # One container's history follows it across its re-creations (each update gives a new key).
    runs = runs_of(user, container_key, base) if container_key else runs_visible_to(user, base)
    items = [{"row": r, "policy": decisions[r.container_id], "can_update": r.container_id in updatable} for r in rows]
    return render(request, "updates/list.html", {
        "items": items, "runs": list(runs[:100]), "show_all": show_all, "container_key": container_key,
        "truncated": len(rows) == ROW_LIMIT, "nav": "updates",
    })
