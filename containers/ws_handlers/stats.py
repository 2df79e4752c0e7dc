"""Stats: stats.subscribe / stats.unsubscribe → "stats.sample" batches.

A socket joins the stats group of each host it asked for (dockmon_site/realtime.py
stats_group); every batch is filtered per sample by what the user may see, and by the
containers asked for when the subscription named containers.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async

from dockmon_site import realtime

logger = logging.getLogger(__name__)

USAGE = 'stats.subscribe takes {"keys": [container keys]} or {"hosts": [host ids]}.'


class StatsStream:
    def __init__(self, socket):
        self.socket = socket
        self.hosts: set[str] = set()
        self.keys: set[str] | None = None

    async def subscribe(self, message) -> None:
        from containers.models import Container, DockerHost

        socket = self.socket
        hosts, keys = message.get("hosts"), message.get("keys")
        visibility = socket.visibility
        if keys is not None:
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                await socket.error(USAGE)
                return
            visible = await database_sync_to_async(
                lambda: {c.key: str(c.host_id) for c in Container.objects.filter(pk__in=keys) if visibility.allows(str(c.host_id), c.key)}
            )()
            wanted_hosts = set(visible.values())
            self.keys = (self.keys or set()) | set(visible)
        elif isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
            known = await database_sync_to_async(
                lambda: {str(pk) for pk in DockerHost.objects.filter(pk__in=[h for h in hosts if len(h) == 36]).values_list("pk", flat=True)}
            )()
            wanted_hosts = {h for h in known if visibility.everything or h in visibility.host_ids}
            self.keys = None
        else:
            await socket.error(USAGE)
            return
        for host_id in wanted_hosts - self.hosts:
            await socket.channel_layer.group_add(realtime.stats_group(host_id), socket.channel_name)
        self.hosts |= wanted_hosts
        await socket.reply("stats.subscribed", {"hosts": sorted(self.hosts), "keys": sorted(self.keys) if self.keys else None})

    async def unsubscribe(self, message) -> None:
        socket = self.socket
        for host_id in self.hosts:
            await socket.channel_layer.group_discard(realtime.stats_group(host_id), socket.channel_name)
        self.hosts, self.keys = set(), None
        await socket.reply("stats.unsubscribed", {})

    async def stop(self) -> None:
        """Leave every stats group quietly (the socket is closing)."""
        socket = self.socket
        for host_id in list(self.hosts):
            try:
                await socket.channel_layer.group_discard(realtime.stats_group(host_id), socket.channel_name)
            except Exception as exc:
                logger.info("group_discard failed: %r", exc)
        self.hosts, self.keys = set(), None

    async def deliver(self, payload: realtime.Envelope) -> None:
        """Pass on the samples of a batch this user may see (and asked for)."""
        visibility = self.socket.visibility
        data = payload.get("data") or {}
        host = data.get("host", "")
        whole_host = visibility.everything or host in visibility.host_ids
        samples = [
            s for s in data.get("samples", [])
            if (whole_host or s["key"] in visibility.container_keys) and (self.keys is None or s["key"] in self.keys)
        ]
        if not samples and not whole_host:
            return
        out = dict(data, samples=samples)
        if not whole_host:
            out.pop("host_totals", None)  # a sum over containers this user may not see
        await self.socket.send_text(realtime.to_text(realtime.envelope(payload["type"], out, payload["ts"])))

    async def recheck(self) -> None:
        """Stats subscriptions the fresh visibility no longer covers are dropped, with a word."""
        socket = self.socket
        visibility = socket.visibility
        lost_keys = sorted(k for k in (self.keys or ()) if not visibility.allows(k.split(":", 1)[0], k))
        if lost_keys:
            self.keys = set(self.keys) - set(lost_keys)
        keep_hosts = set()
        for host_id in self.hosts:
            if visibility.everything or host_id in visibility.host_ids:
                keep_hosts.add(host_id)
            elif self.keys and any(k.startswith(f"{host_id}:") for k in self.keys):
                keep_hosts.add(host_id)
        lost_hosts = sorted(self.hosts - keep_hosts)
        for host_id in lost_hosts:
            await socket.channel_layer.group_discard(realtime.stats_group(host_id), socket.channel_name)
        self.hosts = keep_hosts
        if lost_keys or lost_hosts:
            await socket.error("Stats stopped for what you no longer have access to.", reason="permission", hosts=lost_hosts, keys=lost_keys)
