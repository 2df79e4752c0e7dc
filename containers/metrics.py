"""/metrics in Prometheus text format.

Container and host gauges come from the database (inventory) and the newest raw stats row
of each host; the event and task counters come from Redis (dockmon_site/counters.py).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from accounts.authentication import TokenAuthentication
from containers import extensions, stats
from containers.models import Container, DockerHost
from containers.permissions import Visibility
from dockmon_site import counters


class DockMonCollector:
    def __init__(self, visibility):
        self.visibility = visibility

    def collect(self):
        vis = self.visibility
        hosts = list(DockerHost.objects.all())
        if not vis.everything:
            hosts = [h for h in hosts if str(h.pk) in vis.host_ids]
        host_up = GaugeMetricFamily("dockmon_host_up", "1 when the engine answers", labels=["host", "name"])
        host_info = GaugeMetricFamily("dockmon_host_info", "Engine facts", labels=["host", "name", "status", "engine_version"])
        for host in hosts:
            host_up.add_metric([str(host.pk), host.name], 1 if host.status == "online" else 0)
            host_info.add_metric([str(host.pk), host.name, host.status, host.engine_version], 1)
        yield host_up
        yield host_info

        # update_available is the updates app's column (containers/extensions.py).
        containers = extensions.annotate(Container.objects.filter(removed_at__isnull=True).select_related("host"), "update_available")
        if not vis.everything:
            containers = [c for c in containers if vis.allows(str(c.host_id), c.key)]
        labels = ["key", "name", "host"]
        running = GaugeMetricFamily("dockmon_container_running", "1 when the container runs", labels=labels)
        state = GaugeMetricFamily("dockmon_container_state", "1 for the container's current state", labels=[*labels, "state"])
        health = GaugeMetricFamily("dockmon_container_healthy", "1 healthy, 0 unhealthy, -1 no healthcheck or starting", labels=labels)
        restarts = CounterMetricFamily("dockmon_container_restarts", "Restarts counted by the engine", labels=labels)
        update = GaugeMetricFamily("dockmon_container_update_available", "1 when a newer image is available", labels=labels)
        by_host: dict[str, list] = {}
        for c in containers:
            values = [c.key, c.name, c.host.name]
            running.add_metric(values, 1 if c.state == "running" else 0)
            state.add_metric([*values, c.state], 1)
            health.add_metric(values, {"healthy": 1, "unhealthy": 0}.get(c.health, -1))
            restarts.add_metric(values, c.restart_count)
            update.add_metric(values, 1 if c.update_available else 0)
            by_host.setdefault(str(c.host_id), []).append(c)
        yield from (running, state, health, restarts, update)

        cpu = GaugeMetricFamily("dockmon_container_cpu_percent", "CPU use in percent of one core", labels=labels)
        mem = GaugeMetricFamily("dockmon_container_memory_bytes", "Memory in use (page cache excluded)", labels=labels)
        limit = GaugeMetricFamily("dockmon_container_memory_limit_bytes", "Memory limit", labels=labels)
        rx = CounterMetricFamily("dockmon_container_network_receive_bytes", "Bytes received", labels=labels)
        tx = CounterMetricFamily("dockmon_container_network_transmit_bytes", "Bytes sent", labels=labels)
        blk_r = CounterMetricFamily("dockmon_container_blkio_read_bytes", "Block device bytes read", labels=labels)
        blk_w = CounterMetricFamily("dockmon_container_blkio_write_bytes", "Block device bytes written", labels=labels)
        for host_id, items in by_host.items():
            _, data = stats.latest(host_id)
            for c in items:
                point = data.get(c.short_id)
                if not point:
                    continue
                values = [c.key, c.name, c.host.name]
                cpu.add_metric(values, point[stats.CPU])
                mem.add_metric(values, point[stats.MEM])
                limit.add_metric(values, point[stats.MEM_LIMIT])
                rx.add_metric(values, point[stats.NET_RX])
                tx.add_metric(values, point[stats.NET_TX])
                blk_r.add_metric(values, point[stats.BLK_READ])
                blk_w.add_metric(values, point[stats.BLK_WRITE])
        yield from (cpu, mem, limit, rx, tx, blk_r, blk_w)

        if vis.everything:
            events = CounterMetricFamily("dockmon_events", "Events emitted on the bus", labels=["type"])
            for type_, n in sorted(counters.read(counters.EVENTS_KEY).items()):
                events.add_metric([type_], n)
            yield events
            tasks = CounterMetricFamily("dockmon_tasks", "Celery tasks finished", labels=["task", "state"])
            for field, n in sorted(counters.read(counters.TASKS_KEY).items()):
                task, _, task_state = field.rpartition("|")
                tasks.add_metric([task, task_state], n)
            yield tasks


def _client_allowed(request) -> bool:
    if settings.DOCKMON_METRICS_PUBLIC:
        return True
    address = request.META.get("REMOTE_ADDR", "")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.DOCKMON_METRICS_ALLOW)


def _visibility_for(request):
    """Who is asking: an allowed address sees everything; otherwise a token or session user."""
    if _client_allowed(request):
        return Visibility(everything=True, staff=True)
    user = getattr(request, "user", None)
    try:
        result = TokenAuthentication().authenticate(request)
    except Exception:
        return None
    if result is not None:
        user = result[0]
    if user is None or not user.is_authenticated:
        return None
    return Visibility.for_user(user)


@require_GET
def metrics_view(request):
    visibility = _visibility_for(request)
    if visibility is None:
        response = HttpResponse("Authentication required: send 'Authorization: Token <token>'.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = "Token"
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DockMonCollector(visibility))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
