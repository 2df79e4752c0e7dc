"""The containers app's part of the configuration file (see containers/config_io.py).

Sections "hosts" (id, name, url, enabled; never TLS material: `tls` says a host had some) and
"tags" (name, color); keys "tags" (set by users, not the compose ones) and "desired_state" of
each "containers" entry. Before the import transaction, the engines of hosts whose containers
the file names but this DockMon does not know yet are listed and inspected; inside it, those
facts go through services.reconcile, as the monitor's own sync would, so the settings can be
bound at once.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from rest_framework import serializers

from containers import bus, config_io, engine, services
from containers.api.serializers import HostSerializer
from containers.choices import DesiredState, EventCategory, TagSource
from containers.config_io import ExportContext, ImportContext, Skip, ValidationContext, apply_values
from containers.engine import facts as engine_facts
from containers.models import Container, ContainerTag, DockerHost, Tag

logger = logging.getLogger(__name__)

SECTIONS = ("hosts", "tags")
CONTAINER_FIELDS = {"tags": [], "desired_state": ""}
INSPECT_THREADS = 8


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------
def has_tls(host: DockerHost) -> bool:
    return host.uses_tls or bool(host.tls_key)  # uses_tls counts material no key opens any more


def export(ctx: ExportContext) -> None:
    for host in DockerHost.objects.order_by("name"):
        ctx.add("hosts", {"id": host.pk, "name": host.name, "url": host.url, "enabled": host.enabled, "tls": has_tls(host)})
    for tag in Tag.objects.order_by("name"):
        ctx.add("tags", {"name": tag.name, "color": tag.color})
    user_tags: dict[str, list[str]] = {}
    links = ContainerTag.objects.filter(source=TagSource.USER, container__removed_at__isnull=True).select_related("tag")
    for container_key, name in links.values_list("container_id", "tag__name"):
        user_tags.setdefault(container_key, []).append(name)
    tagged = ContainerTag.objects.filter(container=OuterRef("pk"), source=TagSource.USER)
    present = Container.objects.present().select_related("host")
    for container in present.filter(Exists(tagged) | ~Q(desired_state=DesiredState.UNSET)):
        entry = ctx.container(container)
        entry["tags"] = sorted(user_tags.get(container.key, []))
        entry["desired_state"] = container.desired_state


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------
class PortableHostSerializer(HostSerializer):
    """A host as the file holds it. The name and URL rules are the API's."""

    id = serializers.UUIDField(help_text="Kept on import: the same hosts get the same ids")
    tls = serializers.BooleanField(required=False, default=False,
                                   help_text="The host had TLS material (not exported); an import without it disables the host")
    tls_ca = tls_cert = tls_key = uses_tls = container_count = None

    class Meta(HostSerializer.Meta):
        fields = ["id", "name", "url", "enabled", "tls"]
        read_only_fields = []
        # Uniqueness is the importer's business: an existing host of that name is matched, not refused.
        extra_kwargs = {"name": {"validators": []}}

    def validate(self, attrs):
        try:
            attrs["url"] = engine.normalize_url(attrs["url"], tls=attrs.get("tls", False))
        except ValueError as exc:
            raise serializers.ValidationError({"url": [str(exc)]}) from None
        if attrs.get("tls") and not attrs["url"].startswith("tcp://"):
            raise serializers.ValidationError({"tls": ["TLS applies only to tcp:// URLs."]})
        return attrs


class PortableTagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["name", "color"]
        extra_kwargs = {"name": {"validators": []}}

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("Enter a name.")
        return value


class ContainerSettingsSerializer(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=200,
                                 help_text="Tags set by users (compose tags follow the engine's labels)")
    desired_state = serializers.ChoiceField(choices=DesiredState.choices, required=False, allow_blank=True)

    def validate_tags(self, value):
        names = [name.strip() for name in value if name.strip()]
        return sorted(set(names))


def container_serializer():
    return ContainerSettingsSerializer


def validate(ctx: ValidationContext) -> None:
    ctx.clean_section("hosts", PortableHostSerializer, identities=(lambda h: str(h["id"]), lambda h: h["name"]))
    ctx.clean_section("tags", PortableTagSerializer, identities=(lambda t: t["name"],))


def container_refs(ctx: ImportContext):
    return []


# ---------------------------------------------------------------------------
# Finding hosts and containers
# ---------------------------------------------------------------------------
def _match_hosts(items: list[dict]) -> dict[str, tuple[DockerHost | None, str]]:
    """The local host each host of the file is: the same id, else the same name, else the only
    host with the same URL (another DockMon watching the same engines). A local host stands
    for one host of the file at most; ids are matched first, for every host."""
    plan: dict[str, tuple[DockerHost | None, str]] = {}
    taken: set = set()
    for item in items:
        host = DockerHost.objects.filter(pk=item["id"]).first()
        if host is not None:
            plan[str(item["id"])] = (host, "id")
            taken.add(host.pk)
    for item in items:
        if str(item["id"]) in plan:
            continue
        match: tuple[DockerHost | None, str] = (None, "")
        host = DockerHost.objects.filter(name=item["name"]).exclude(pk__in=taken).first()
        if host is not None:
            match = (host, "name")
        else:
            same_url = list(DockerHost.objects.filter(url=item["url"]).exclude(pk__in=taken)[:2])
            if len(same_url) == 1:
                match = (same_url[0], "url")
        if match[0] is not None:
            taken.add(match[0].pk)
        plan[str(item["id"])] = match
    return plan


def prepare(ctx: ImportContext) -> None:
    """Before the transaction: match the file's hosts, and read the engine of every host that
    holds a container the file names but this DockMon has not seen (read-only engine calls)."""
    doc_hosts = {str(item["id"]): item for item in ctx.items("hosts")}
    plan = _match_hosts(list(doc_hosts.values()))
    ctx.state["host_plan"] = plan
    wanted: dict[str, set[str]] = {}
    for host_id, name in config_io.container_refs(ctx):
        wanted.setdefault(host_id, set()).add(name)
    locals_ = {host_id: plan[host_id][0] if host_id in plan else DockerHost.objects.filter(pk=host_id).first() for host_id in wanted}
    missing: list[str] = []
    for host_id, names in wanted.items():
        local = locals_[host_id]
        if local is None and host_id not in doc_hosts:
            continue  # no such host anywhere: reported when its containers are looked for
        known = set(Container.objects.present().filter(host=local).values_list("name", flat=True)) if local is not None else set()
        if names - known:
            missing.append(host_id)
    jobs = {}
    for host_id in missing:
        local = locals_[host_id]
        item = doc_hosts.get(host_id, {})
        label = item.get("name") or (local.name if local else host_id)
        enabled = item.get("enabled", local.enabled if local else True)
        url = item.get("url") or local.url
        wants_tls = item.get("tls", False) or (local is not None and has_tls(local))
        tls = {"tls_ca": local.tls_ca, "tls_cert": local.tls_cert, "tls_key": local.tls_key} if local is not None else {}
        if not enabled:
            ctx.host_problems[host_id] = f"host {label} is disabled, so its engine was not asked"
        elif wants_tls and not (local is not None and has_tls(local)):
            ctx.host_problems[host_id] = f"host {label} needs its TLS certificates before DockMon can reach it"
        else:
            jobs[host_id] = (label, url, tls)
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        futures = {host_id: pool.submit(_read_engine, url, tls) for host_id, (label, url, tls) in jobs.items()}
    facts = {}
    for host_id, future in futures.items():
        label = jobs[host_id][0]
        try:
            facts[host_id] = future.result()
        except Exception as exc:  # an outside system: whatever it does, it is this host's problem, not the import's
            if not isinstance(exc, engine.EngineError):
                logger.warning("config import: reading the engine of %s failed", label, exc_info=True)
            reason = str(exc) if isinstance(exc, engine.EngineError) else engine.describe_error(exc)
            ctx.host_problems[host_id] = f"host {label} did not answer ({reason}); import again once it does"
            ctx.engine_sync.append({"host": label, "ok": False, "detail": reason})
    ctx.state["engine_facts"] = facts


def _read_engine(url: str, tls: dict) -> list:
    """Every container of an engine, inspected (what the monitor's first sync reads)."""
    client = engine.connect(url, timeout=settings.DOCKMON_ENGINE_TIMEOUT, **tls)
    try:
        summaries = engine_facts.list_containers(client)

        def inspect(facts):
            try:
                return engine_facts.inspect_container(client, facts.container_id)
            except engine.ContainerGone:
                return None

        with ThreadPoolExecutor(max_workers=INSPECT_THREADS) as pool:
            inspected = list(pool.map(inspect, summaries))
        return [f for f in inspected if f is not None]
    finally:
        client.close()


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------
def import_(ctx: ImportContext) -> None:
    _import_hosts(ctx)
    _import_tags(ctx)
    _sync_hosts(ctx)
    _import_container_settings(ctx)


def _import_hosts(ctx: ImportContext) -> None:
    plan = ctx.state.get("host_plan", {})
    for item in ctx.items("hosts"):
        host_id = str(item["id"])
        result = ctx.item("hosts", item["name"])
        ctx.hosts[host_id] = None
        with ctx.guard(result):
            matched, how = plan.get(host_id, (None, ""))
            host = DockerHost.objects.filter(pk=matched.pk).first() if matched is not None else None
            values = {"name": item["name"], "url": item["url"], "enabled": item.get("enabled", True)}
            if host is None:
                if DockerHost.objects.filter(name=item["name"]).exists():
                    raise Skip(f"another host is named {item['name']!r}")
                host = DockerHost(id=item["id"], created_by=ctx.user)
                result.created()
            elif how != "id":
                result.note(f"matched the host with the same {how} (id {host.pk} here)")
            if DockerHost.objects.filter(name=values["name"]).exclude(pk=host.pk).exists():
                values.pop("name")
                result.note(f"name kept as {host.name!r}: another host is named {item['name']!r}")
            if item.get("tls") and not has_tls(host):
                values["enabled"] = False
                result.note("needs its TLS certificates (not in the file): disabled until they are added")
            changed = apply_values(host, values)
            if changed or result.result == "created":
                host.save()
                result.updated()
                _announce(ctx, host, created=result.result == "created", fields=changed)
            ctx.hosts[host_id] = host
        if result.result == "skipped":
            ctx.host_problems[host_id] = f"host {item['name']} was not imported ({result.reason})"


def _announce(ctx: ImportContext, host: DockerHost, *, created: bool, fields: list[str]) -> None:
    """The event-log entries the hosts API writes for the same change."""
    if created:
        bus.emit("host.added", category=EventCategory.HOST, host=host, actor=ctx.user,
                 message=f"{ctx.actor_name} added host {host.name} ({host.url}) from a configuration file",
                 data={"host": str(host.pk), "name": host.name, "url": host.url})
    else:
        bus.emit("host.changed", category=EventCategory.HOST, host=host, actor=ctx.user,
                 message=f"{ctx.actor_name} changed host {host.name} from a configuration file",
                 data={"host": str(host.pk), "name": host.name, "fields": sorted(fields)})


def _import_tags(ctx: ImportContext) -> None:
    for item in ctx.items("tags"):
        result = ctx.item("tags", item["name"])
        with ctx.guard(result):
            tag = Tag.objects.filter(name=item["name"]).first()
            if tag is None:
                Tag.objects.create(name=item["name"], color=item.get("color", ""))
                result.created()
            elif "color" in item and apply_values(tag, {"color": item["color"]}):
                tag.save(update_fields=["color"])
                result.updated()


def _sync_hosts(ctx: ImportContext) -> None:
    """Record what the engines said (services.reconcile, like the monitor's first sync)."""
    for host_id, facts in ctx.state.get("engine_facts", {}).items():
        host = ctx.local_host(host_id)
        if host is None:
            continue
        result = services.reconcile(host.pk, facts, initial=True)
        ctx.engine_sync.append({"host": host.name, "ok": True, "detail": f"synced: {result['total']} containers"})
    ctx.state.pop("present", None)
    ctx.forget_containers()


def _import_container_settings(ctx: ImportContext) -> None:
    entries = list(ctx.container_entries())
    links = config_io.rows_by_container(ContainerTag.objects.select_related("tag"), [c.pk for _, c, _ in entries], many=True)
    tags = {tag.name: tag for tag in Tag.objects.all()}
    for entry, container, result in entries:
        with ctx.guard(result):
            if "tags" in entry:
                current = {link.tag.name: link for link in links.get(container.pk, [])}
                result.changed(_set_user_tags(container, entry["tags"], current, tags))
            if "desired_state" in entry and container.desired_state != entry["desired_state"]:
                Container.objects.filter(pk=container.pk).update(desired_state=entry["desired_state"])
                container.desired_state = entry["desired_state"]
                result.updated()


def _set_user_tags(container: Container, names: list[str], links: dict[str, ContainerTag], tags: dict[str, Tag]) -> bool:
    # A tag the engine's compose labels already put on the container stays theirs.
    wanted = {name for name in names if not (name in links and links[name].source != TagSource.USER)}
    changed = False
    for name, link in links.items():
        if link.source == TagSource.USER and name not in wanted:
            link.delete()
            changed = True
    for name in sorted(wanted - set(links)):
        if name not in tags:
            tags[name] = Tag.objects.get_or_create(name=name)[0]
        ContainerTag.objects.create(container=container, tag=tags[name], source=TagSource.USER)
        changed = True
    return changed


__all__ = ["CONTAINER_FIELDS", "SECTIONS", "container_refs", "container_serializer", "export", "import_", "prepare", "validate"]
