"""Browser pages for hosts, containers and events (server-rendered; live.js keeps them current)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from containers import extensions, stats
from containers.choices import ContainerState, EventCategory, Health, Severity, StatsTier
from containers.models import Container, ContainerTag, DiskUsage, Event, StatsBatch
from containers.permissions import Visibility, has_container_perm, visible_containers, visible_hosts

# Sparklines on the container list: this many of the newest raw points, none older than this.
SPARK_POINTS = 30
SPARK_WINDOW = timedelta(minutes=10)
SPARK_MAX_KEYS = 500


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
    queryset = extensions.annotate(visible_containers(request.user, queryset=Container.objects.present()), "update_available")
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
def container_sparklines(request):
    """GET ?keys=k1,k2,…: the newest raw CPU/memory points of those containers, for the list's
    sparklines ({points: {key: [[t_ms, cpu_percent, mem_bytes], …]}, limits: {key: bytes}}).
    Keys the user may not see are left out; one query per host of the asked keys."""
    raw = request.GET.get("keys", "")
    keys = [k for k in raw.split(",") if k]
    if not keys:
        return JsonResponse({"keys": ["Give one or more container keys, separated by commas."]}, status=400)
    if len(keys) > SPARK_MAX_KEYS:
        return JsonResponse({"keys": [f"At most {SPARK_MAX_KEYS} keys per request."]}, status=400)
    wanted: dict = {}
    for key, host_id, short in visible_containers(request.user).filter(pk__in=keys).values_list("pk", "host_id", "short_id"):
        wanted.setdefault(host_id, {})[short] = key
    since = timezone.now() - SPARK_WINDOW
    points: dict[str, list] = {}
    limits: dict[str, int] = {}
    for host_id, shorts in wanted.items():
        rows = list(
            StatsBatch.objects.filter(host_id=host_id, tier=StatsTier.RAW, ts__gte=since).order_by("-ts").values_list("ts", "data")[:SPARK_POINTS]
        )
        for ts, data in reversed(rows):
            t = int(ts.timestamp() * 1000)
            for short, key in shorts.items():
                point = data.get(short)
                if point:
                    point = stats.full(point)
                    points.setdefault(key, []).append([t, point[stats.CPU], point[stats.MEM]])
                    limits[key] = point[stats.MEM_LIMIT]
    return JsonResponse({"points": points, "limits": limits})


def _settings_context(request, container) -> dict:
    """What the settings panel of the container page may edit; other apps' rows of the form
    (update policy, auto-update, auto-restart) come from their registered fragments."""
    can_change = has_container_perm(request.user, "change", container)
    rows, editable = extensions.setting_rows(request, container)
    return {"can_change": can_change, "setting_rows": rows, "can_save": can_change or editable}


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
        **_settings_context(request, container),
        "panels": extensions.panels(request, container),
        "tags": sorted(t.name for t in container.tags.all()),
        "labels": sorted((container.labels or {}).items()),
        "nav": "containers",
    })


def _latest_disk():
    """Subqueries for the newest `docker system df` of a host: its total size and when."""
    latest = DiskUsage.objects.filter(host=OuterRef("pk")).order_by("-ts")
    total = latest.annotate(total=F("images_size") + F("containers_size") + F("volumes_size") + F("build_cache_size"))
    return {"disk_total": Subquery(total.values("total")[:1]), "disk_ts": Subquery(latest.values("ts")[:1])}


@login_required
def host_list(request):
    hosts = visible_hosts(request.user).annotate(
        n_total=Count("containers", filter=Q(containers__removed_at__isnull=True)),
        n_running=Count("containers", filter=Q(containers__removed_at__isnull=True, containers__state="running")),
        **_latest_disk(),
    ).order_by("name")
    return render(request, "containers/hosts.html", {"hosts": hosts, "nav": "hosts"})


@login_required
def host_detail(request, pk):
    host = visible_hosts(request.user).filter(pk=pk).first()
    if host is None:
        raise Http404("No such host.")
    containers = list(
        visible_containers(request.user, queryset=Container.objects.present().filter(host=host))
        .order_by("name").values("key", "name", "state", "health", "image", "status")
    )
    return render(request, "containers/host_detail.html", {
        "host": host, "containers": containers, "disk": host.disk_usage.order_by("-ts").first(), "nav": "hosts",
        "n_running": sum(1 for c in containers if c["state"] == ContainerState.RUNNING),
    })


@login_required
def event_list(request):
    """The event log with filters (category, severity, host, container, text); the page script
    adds new events that match the same filters as they arrive."""
    visibility = Visibility.for_user(request.user)
    events = visibility.filter_rows(Event.objects.select_related("host", "actor").order_by("-ts", "-id"))
    category = request.GET.get("category", "")
    severity = request.GET.get("severity", "")
    search = request.GET.get("q", "").strip()
    hosts = [(str(pk), name) for pk, name in visible_hosts(request.user).order_by("name").values_list("pk", "name")]
    host = request.GET.get("host", "")
    if host not in dict(hosts):
        host = ""
    # The container filter takes a key (links from a container page) or a name; a name matches
    # the events of every container that had it (a recreated container keeps its name).
    container = request.GET.get("container", "").strip()[:255]
    container_keys: list[str] = []
    if category in EventCategory.values:
        events = events.filter(category=category)
    if severity in Severity.values:
        events = events.filter(severity=severity)
    if host:
        events = events.filter(host_id=host)
    if container:
        if visible_containers(request.user).filter(pk=container).exists():
            container_keys = [container]
            events = events.filter(container_key=container)
        else:
            container_keys = list(visible_containers(request.user).filter(name__iexact=container).values_list("pk", flat=True)[:100])
            events = events.filter(container_name__iexact=container)
    if search:
        events = events.filter(Q(message__icontains=search) | Q(container_name__icontains=search) | Q(type__icontains=search))
    names = list(
        visible_containers(request.user, queryset=Container.objects.present()).order_by("name").values_list("name", flat=True).distinct()[:500]
    )
    return render(request, "containers/events.html", {
        "events": events[:200], "categories": EventCategory.choices, "severities": Severity.choices,
        "category": category, "severity": severity, "q": search, "nav": "events",
        "hosts": hosts, "host": host, "container": container, "container_keys": container_keys, "container_names": names,
    })
