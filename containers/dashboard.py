"""The dashboard page and its JSON (the page's live refresh); other apps add their parts to
it through containers/extensions.py (the alerts app: open alerts)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import JsonResponse
from django.shortcuts import render

from containers import extensions, stats
from containers.models import Container, Event
from containers.permissions import Visibility, visible_containers, visible_hosts


def _hosts(user) -> list[dict]:
    hosts = visible_hosts(user).annotate(
        n_total=Count("containers", filter=Q(containers__removed_at__isnull=True)),
        n_running=Count("containers", filter=Q(containers__removed_at__isnull=True, containers__state="running")),
    ).order_by("name")
    return [{"id": str(h.pk), "name": h.name, "status": h.status, "total": h.n_total, "running": h.n_running} for h in hosts]


TOP = 5


def dashboard_data(user, part: str = "") -> dict:
    """Everything the dashboard shows. `part="hosts"` is the host rows alone (the hosts page's
    live counts).

    Top CPU/memory: the page redraws them from live `stats.sample` messages, one host at a time.
    So it gets each host's own top entries (the global top can only come from those) and the
    names of the running containers, which samples do not carry."""
    hosts = _hosts(user)
    if part == "hosts":
        return {"hosts": hosts}
    containers = extensions.annotate(visible_containers(user, queryset=Container.objects.present()), "update_available")
    by_state = dict(containers.values_list("state").annotate(n=Count("key")).order_by())
    names = {c["key"]: c for c in containers.values("key", "name", "host__name", "host_id", "update_available", "health", "state")}
    running = {k: [c["name"], c["host__name"]] for k, c in names.items() if c["state"] == "running"}
    top = []
    for host_id in {c["host_id"] for c in names.values()}:
        _, data = stats.latest(host_id)
        entries = []
        for short, point in data.items():
            key = f"{host_id}:{short}"
            if key in running:
                entries.append({"key": key, "name": running[key][0], "host": running[key][1], "host_id": str(host_id),
                                "cpu": point[stats.CPU], "mem": point[stats.MEM]})
        chosen = {e["key"]: e for e in sorted(entries, key=lambda e: -e["cpu"])[:TOP]}
        chosen.update({e["key"]: e for e in sorted(entries, key=lambda e: -e["mem"])[:TOP]})
        top.extend(chosen.values())
    events = Visibility.for_user(user).filter_rows(Event.objects.order_by("-ts", "-id"))
    return {
        "hosts": hosts,
        "states": by_state,
        "total": sum(by_state.values()),
        "unhealthy": sum(1 for c in names.values() if c["health"] == "unhealthy"),
        "updates": [{"key": k, "name": c["name"], "host": c["host__name"]} for k, c in names.items() if c.get("update_available")][:20],
        "n_updates": sum(1 for c in names.values() if c.get("update_available")),
        "top": top,
        "top_cpu": sorted(top, key=lambda t: -t["cpu"])[:TOP],
        "top_mem": sorted(top, key=lambda t: -t["mem"])[:TOP],
        "running": running,
        "events": [
            {"ts": e.ts.isoformat().replace("+00:00", "Z"), "severity": e.severity, "type": e.type, "message": e.message, "key": e.container_key}
            for e in events[:15]
        ],
        **extensions.dashboard_parts(user),
    }


@login_required
def dashboard(request):
    return render(request, "dashboard.html", {"d": dashboard_data(request.user), "nav": "dashboard"})


@login_required
def dashboard_json(request):
    return JsonResponse(dashboard_data(request.user, part=request.GET.get("part", "")))
