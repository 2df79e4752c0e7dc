"""Browser pages for hosts, containers and events (server-rendered; live.js keeps them current)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Exists, OuterRef, Q
from django.http import Http404
from django.shortcuts import render

from containers import stats
from containers.choices import ContainerState, EventCategory, Health, Severity
from containers.models import Container, ContainerTag, Event
from dockmon_site.permissions import Visibility, has_container_perm, visible_containers, visible_hosts


def annotate_updates(queryset):
    """update_available from the updates app's last check, in the same query."""
    try:
        from updates.models import ContainerUpdate
    except ImportError:  # pragma: no cover - the updates app is part of the project
        return queryset
    return queryset.annotate(update_available=Exists(ContainerUpdate.objects.filter(container=OuterRef("pk"), update_available=True)))


def _latest_stats(host_ids) -> dict[str, list]:
    """{container key: full point} from each host's newest raw stats row (one query per host)."""
    result = {}
    for host_id in host_ids:
        _, data = stats.latest(host_id)
        for short, point in data.items():
            if short != stats.HOST_KEY:
                result[f"{host_id}:{short}"] = point
    return result


@login_required
def container_list(request):
    """The rows go to the page as compact JSON and the page script draws them: for thousands of
    containers that is far cheaper than a template loop, on the server and in the browser."""
    queryset = annotate_updates(visible_containers(request.user, queryset=Container.objects.present()))
    rows = list(
        queryset.order_by("host__name", "name").values(
            "key", "host_id", "host__name", "name", "image", "state", "health", "status", "short_id", "update_available"
        )
    )
    keys = [row["key"] for row in rows]
    tags_by_key: dict[str, list[str]] = {}
    tag_names = set()
    for container_id, name in ContainerTag.objects.filter(container_id__in=keys).values_list("container_id", "tag__name"):
        tags_by_key.setdefault(container_id, []).append(name)
        tag_names.add(name)
    latest = _latest_stats({row["host_id"] for row in rows})
    hosts: dict[str, str] = {}
    data = []
    for row in rows:
        point = latest.get(row["key"])
        hosts[str(row["host_id"])] = row["host__name"]
        data.append([
            row["key"], str(row["host_id"]), row["name"], row["image"], row["state"], row["health"], row["status"],
            " ".join(sorted(tags_by_key.get(row["key"], []))), 1 if row["update_available"] else 0,
            point[stats.CPU] if point else None, point[stats.MEM] if point else None,
        ])
    if not data:
        for host in visible_hosts(request.user).order_by("name"):
            hosts[str(host.pk)] = host.name
    return render(request, "containers/list.html", {
        "rows": data, "hosts": sorted(hosts.items(), key=lambda item: item[1]), "tags": sorted(tag_names),
        "states": ContainerState.choices, "healths": Health.choices, "nav": "containers",
    })


@login_required
def container_detail(request, key):
    container = visible_containers(request.user, queryset=Container.objects.select_related("host")).filter(pk=key).first()
    if container is None:
        raise Http404("No such container.")
    events = Event.objects.filter(container_key=container.key).order_by("-ts")[:50]
    return render(request, "containers/detail.html", {
        "c": container,
        "events": events,
        "can_operate": has_container_perm(request.user, "operate", container),
        "can_change": has_container_perm(request.user, "change", container),
        "tags": sorted(t.name for t in container.tags.all()),
        "labels": sorted((container.labels or {}).items()),
        "nav": "containers",
    })


@login_required
def host_list(request):
    hosts = visible_hosts(request.user).annotate(
        n_total=Count("containers", filter=Q(containers__removed_at__isnull=True)),
        n_running=Count("containers", filter=Q(containers__removed_at__isnull=True, containers__state="running")),
    ).order_by("name")
    return render(request, "containers/hosts.html", {"hosts": hosts, "nav": "hosts"})


@login_required
def host_detail(request, pk):
    host = visible_hosts(request.user).filter(pk=pk).first()
    if host is None:
        raise Http404("No such host.")
    containers = list(
        visible_containers(request.user, queryset=Container.objects.present().filter(host=host)).prefetch_related("tags").order_by("name")
    )
    return render(request, "containers/host_detail.html", {
        "host": host, "containers": containers, "disk": host.disk_usage.first(), "nav": "hosts",
    })


@login_required
def event_list(request):
    events = Visibility.for_user(request.user).filter_rows(Event.objects.select_related("host", "actor").order_by("-ts", "-id"))
    category = request.GET.get("category", "")
    severity = request.GET.get("severity", "")
    search = request.GET.get("q", "").strip()
    if category in EventCategory.values:
        events = events.filter(category=category)
    if severity in Severity.values:
        events = events.filter(severity=severity)
    if search:
        events = events.filter(Q(message__icontains=search) | Q(container_name__icontains=search) | Q(type__icontains=search))
    return render(request, "containers/events.html", {
        "events": events[:200], "categories": EventCategory.choices, "severities": Severity.choices,
        "category": category, "severity": severity, "q": search, "nav": "events",
    })
