"""The broadcast stream: every event the user may see, optionally only of some hosts.

The hosts are chosen with ?host=a,b on the URL or {"action": "subscribe", "hosts": [ids]}
([] = all). A message published for one user (the progress of their bulk job) reaches that
user's sockets only.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from dockmon_site import realtime


def hosts_from_query(query: str) -> set[str] | None:
    values = parse_qs(query).get("host", [])
    hosts = {h for value in values for h in value.split(",") if h}
    return hosts or None


class EventStream:
    def __init__(self, socket, hosts: set[str] | None):
        self.socket = socket
        self.hosts = hosts

    async def subscribe(self, message) -> None:
        hosts = message.get("hosts")
        if hosts is None or hosts == []:
            self.hosts = None
        elif isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
            self.hosts = set(hosts)
        else:
            await self.socket.error('subscribe takes {"hosts": [host ids]} (empty for all).')
            return
        await self.socket.reply("subscribed", {"hosts": sorted(self.hosts or [])})

    async def deliver(self, event: realtime.LayerMessage) -> None:
        socket = self.socket
        visibility = socket.visibility
        host, key = event.get("host", ""), event.get("key", "")
        target = event.get("user")
        if target is not None:
            # A message for one person: theirs only, and when it names a container, only while
            # they may still see that container.
            if target != socket.user.pk or ((host or key) and not visibility.allows(host, key)):
                return
            await socket.send_text(event["text"])
            return
        if not visibility.allows(host, key):
            return
        if self.hosts is not None and host not in self.hosts:
            return
        await socket.send_text(event["text"])
