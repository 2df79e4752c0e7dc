"""Export and import of DockMon's configuration as one versioned JSON document.

What people set up travels (hosts, tags, per-container settings, update policies and pattern
categories, registry credentials, health checks, notification channels, alert rules,
maintenance windows); history, runtime state, users and secrets do not. Each app knows its own
models in ``<app>/portable.py``; this module only drives them, in the order of ``MODULES``
(later apps refer to what earlier ones imported: rules name channels, tags and containers).
A portable module provides:

    SECTIONS              the top-level lists it owns ("hosts", "health_checks", ...)
    CONTAINER_FIELDS      its keys of each "containers" entry, with their "not set" value
    container_serializer() a DRF serializer class for those keys (or None)
    export(ctx)           fills its sections and its keys of the container entries
    validate(ctx)         cleans its sections (field errors per item, nothing written)
    container_refs(ctx)   the (host id, container name) pairs its sections refer to
    prepare(ctx)          optional; before the transaction (engine calls, no writes)
    import_(ctx)          writes, inside the one transaction

Containers are named by (host id, container name), never by key, so a file survives
recreations and applies to another DockMon watching the same engines. Importing is a merge:
objects named in the file are created or brought in line with it, nothing absent from it is
deleted, and secrets already stored on an object are never touched. A dry run does all of it
inside the transaction and rolls it back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from importlib import import_module
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers

from containers.models import Container, DockerHost

logger = logging.getLogger(__name__)

FORMAT_KEY = "dockmon_config"
FORMAT_VERSION = 1
MODULES = ("containers.portable", "updates.portable", "healthchecks.portable", "alerts.portable")
CONTAINERS = "containers"
INFO_KEYS = ("exported_at", "not_included")

NOT_INCLUDED = [
    "secrets: TLS material of hosts, registry passwords, secret settings of notification channels, "
    "header values and basic-auth passwords of health checks (each object says which it had)",
    "users, groups, object permissions and API tokens",
    "history and state: events, stats, disk usage, alerts and their notifications, update checks and runs, "
    "rolled-back releases, health-check results, restart attempts, profiler sessions, the audit log",
    "settings of removed containers",
]

RESULTS = ("created", "updated", "unchanged", "skipped")


class ConfigError(Exception):
    """The document is not a valid configuration: `errors` are field errors, by section and item."""

    def __init__(self, errors):
        super().__init__("invalid configuration document")
        self.errors = errors


class Skip(Exception):
    """Raised inside ImportContext.guard(): this object is left out, for the reason given."""


def modules() -> list:
    return [import_module(name) for name in MODULES]


def sections() -> list[str]:
    return [name for module in modules() for name in module.SECTIONS]


def kinds() -> list[str]:
    names = sections()
    names.insert(names.index("tags") + 1 if "tags" in names else 0, CONTAINERS)
    return names


# ---------------------------------------------------------------------------
# JSON-safe values
# ---------------------------------------------------------------------------
def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plain(value: Any) -> Any:
    """A copy of `value` made of JSON types (dates as ISO 8601 UTC with a Z, times as HH:MM:SS)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------
class ExportContext:
    def __init__(self):
        self.sections: dict[str, list] = {}
        self._containers: dict[tuple[str, str], dict] = {}
        self._order: dict[tuple[str, str], tuple[str, str]] = {}

    def add(self, section: str, item: dict) -> None:
        self.sections.setdefault(section, []).append(plain(item))

    @staticmethod
    def ref(container) -> dict:
        """How the file names a container: its host's id and its name."""
        return {"host": str(container.host_id), "name": container.name}

    def container(self, container) -> dict:
        """The "containers" entry of a (present) container; apps set their keys on it."""
        key = (str(container.host_id), container.name)
        entry = self._containers.get(key)
        if entry is None:
            entry = self._containers[key] = self.ref(container)
            self._order[key] = (container.host.name, container.name)
        return entry

    def document(self, mods) -> dict:
        defaults = {name: value for module in mods for name, value in getattr(module, "CONTAINER_FIELDS", {}).items()}
        entries = []
        for key in sorted(self._containers, key=lambda k: self._order[k]):
            entry = self._containers[key]
            entries.append(plain({**entry, **{name: entry.get(name, value) for name, value in defaults.items()}}))
        doc = {FORMAT_KEY: FORMAT_VERSION, "exported_at": iso(timezone.now()), "not_included": NOT_INCLUDED}
        for name in kinds():
            doc[name] = entries if name == CONTAINERS else self.sections.get(name, [])
        return doc


def export_config() -> dict:
    """The whole configuration as a JSON-safe dict."""
    mods = modules()
    ctx = ExportContext()
    for module in mods:
        module.export(ctx)
    return ctx.document(mods)


def counts(doc: dict) -> dict[str, int]:
    return {name: len(doc.get(name) or []) for name in kinds()}


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------
class ValidationContext:
    def __init__(self, doc: dict):
        self.doc = doc
        self.errors: dict[str, Any] = {}
        self.cleaned: dict[str, list[dict]] = {}

    def raw(self, section: str) -> list | None:
        value = self.doc.get(section)
        if value is None:
            return []
        if not isinstance(value, list):
            self.errors[section] = ["Expected a list."]
            return None
        return value

    def clean_section(self, section: str, serializer_class, *, identities=()) -> list[dict]:
        """Validate every item of a section with `serializer_class`; `identities` are functions
        giving an item's natural keys (two items with the same key are an error)."""
        raw = self.raw(section)
        cleaned: list[dict] = []
        if raw is None:
            return cleaned
        errors: dict[str, Any] = {}
        seen: list[dict] = [{} for _ in identities]
        for index, item in enumerate(raw):
            data, item_errors = clean_item(serializer_class, item)
            if item_errors:
                errors[str(index)] = item_errors
                continue
            duplicate = None
            for position, identity in enumerate(identities):
                key = identity(data)
                if key in seen[position]:
                    duplicate = seen[position][key]
                    break
            if duplicate is not None:
                errors[str(index)] = {"non_field_errors": [f"Names the same object as item {duplicate}."]}
                continue
            for position, identity in enumerate(identities):
                seen[position][identity(data)] = index
            cleaned.append(data)
        if errors:
            self.errors[section] = errors
        self.cleaned[section] = cleaned
        return cleaned


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def clean_item(serializer_class, item, **kwargs) -> tuple[dict, dict]:
    """(validated data, errors) of one object; unknown keys are errors too (typos must not pass)."""
    if not isinstance(item, dict):
        return {}, {"non_field_errors": ["Expected an object."]}
    if _has_nul(item):
        # No database stores a NUL character in text or JSON; free-form settings would reach it.
        return {}, {"non_field_errors": ["Text must not contain NUL characters."]}
    serializer = serializer_class(data=item, **kwargs)
    writable = {name for name, f in serializer.fields.items() if not f.read_only}
    unknown = sorted(set(item) - writable)
    valid = serializer.is_valid()
    errors = dict(serializer.errors) if not valid else {}
    for name in unknown:
        errors[name] = ["Unknown field."]
    return (dict(serializer.validated_data) if valid else {}), errors


class ContainerRefSerializer(serializers.Serializer):
    host = serializers.UUIDField(help_text="The host's id")
    name = serializers.CharField(max_length=255, help_text="The container's name on that host")


def _clean_containers(ctx: ValidationContext, mods) -> None:
    raw = ctx.raw(CONTAINERS)
    if raw is None:
        return
    owners = [(module, module.container_serializer()) for module in mods if getattr(module, "CONTAINER_FIELDS", None)]
    owned = {name for module, _ in owners for name in module.CONTAINER_FIELDS}
    errors: dict[str, Any] = {}
    cleaned: list[dict] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            errors[str(index)] = {"non_field_errors": ["Expected an object."]}
            continue
        entry, item_errors = clean_item(ContainerRefSerializer, {k: v for k, v in item.items() if k in ("host", "name")})
        for name in sorted(set(item) - owned - {"host", "name"}):
            item_errors[name] = ["Unknown field."]
        for module, serializer_class in owners:
            part = {k: v for k, v in item.items() if k in module.CONTAINER_FIELDS}
            data, part_errors = clean_item(serializer_class, part)
            item_errors.update(part_errors)
            entry.update(data)
        if not item_errors:
            key = (str(entry["host"]), entry["name"])
            if key in seen:
                item_errors = {"non_field_errors": [f"Names the same container as item {seen[key]}."]}
            else:
                seen[key] = index
        if item_errors:
            errors[str(index)] = item_errors
            continue
        entry["host"] = str(entry["host"])
        cleaned.append(entry)
    if errors:
        ctx.errors[CONTAINERS] = errors
    ctx.cleaned[CONTAINERS] = cleaned


def validate(doc) -> dict[str, list[dict]]:
    """The cleaned sections of a document, or ConfigError with every field error found."""
    if not isinstance(doc, dict):
        raise ConfigError({"non_field_errors": ["A configuration document is a JSON object."]})
    version = doc.get(FORMAT_KEY)
    if version is None:
        raise ConfigError({FORMAT_KEY: [f"Not a DockMon configuration document (no {FORMAT_KEY!r} version)."]})
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise ConfigError({FORMAT_KEY: [f"Unsupported version {version!r}: this DockMon reads version {FORMAT_VERSION}."]})
    mods = modules()
    known = {FORMAT_KEY, *INFO_KEYS, *kinds()}
    ctx = ValidationContext(doc)
    for name in sorted(set(doc) - known):
        ctx.errors[name] = ["Unknown section."]
    _clean_containers(ctx, mods)
    for module in mods:
        module.validate(ctx)
    if ctx.errors:
        raise ConfigError(ctx.errors)
    return ctx.cleaned


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------
@dataclass
class ItemResult:
    kind: str
    ref: str
    result: str = "unchanged"
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    def created(self) -> None:
        if self.result != "skipped":
            self.result = "created"

    def updated(self) -> None:
        if self.result == "unchanged":
            self.result = "updated"

    def changed(self, flag: bool) -> None:
        if flag:
            self.updated()

    def skip(self, reason: str) -> None:
        self.result = "skipped"
        self.reason = reason

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def as_dict(self) -> dict:
        out = {"kind": self.kind, "ref": self.ref, "result": self.result}
        if self.reason:
            out["reason"] = self.reason
        if self.notes:
            out["notes"] = list(self.notes)
        return out


class ImportContext:
    def __init__(self, cleaned: dict[str, list[dict]], *, dry_run: bool = False, user=None):
        self.cleaned = cleaned
        self.dry_run = dry_run
        self.user = user if getattr(user, "is_authenticated", False) else None
        self.actor_name = self.user.username if self.user is not None else "manage.py import_config"
        # Filled by containers.portable: the local host of each host id the file names
        # (None: skipped), and why the containers of a host cannot be found.
        self.hosts: dict[str, Any] = {}
        self.host_problems: dict[str, str] = {}
        self.engine_sync: list[dict] = []
        self.state: dict[str, Any] = {}
        self.results: list[ItemResult] = []
        self._entries: dict[int, ItemResult] = {}
        self._found: dict[tuple[str, str], tuple[Any, str]] = {}
        self._names = {str(item["id"]): item["name"] for item in self.items("hosts")}

    # ---- sections and results -------------------------------------------------------------
    def items(self, section: str) -> list[dict]:
        return self.cleaned.get(section, [])

    def item(self, kind: str, ref: str) -> ItemResult:
        result = ItemResult(kind, ref)
        self.results.append(result)
        return result

    @contextmanager
    def guard(self, result: ItemResult) -> Iterator[ItemResult]:
        """One object's writes in a savepoint: a Skip, a constraint or a model validation error
        leaves that object out (with the reason) and the rest of the import goes on."""
        try:
            with transaction.atomic():
                yield result
        except Skip as exc:
            result.skip(str(exc))
        except IntegrityError as exc:
            logger.info("config import: %s %s conflicts: %s", result.kind, result.ref, exc)
            result.skip("conflicts with what is stored here (" + (str(exc).splitlines() or ["constraint"])[0][:200] + ")")
        except DataError as exc:
            logger.info("config import: %s %s refused by the database: %s", result.kind, result.ref, exc)
            result.skip("a value the database cannot store (" + (str(exc).splitlines() or ["data"])[0][:200] + ")")
        except DjangoValidationError as exc:
            result.skip("; ".join(exc.messages))

    # ---- hosts and containers -------------------------------------------------------------
    def local_host(self, host_id):
        """The local host a host id of the file stands for (None when there is none)."""
        host_id = str(host_id)
        if host_id in self.hosts:
            return self.hosts[host_id]
        return DockerHost.objects.filter(pk=host_id).first()

    def host_label(self, host_id) -> str:
        host_id = str(host_id)
        if host_id in self._names:
            return self._names[host_id]
        host = self.local_host(host_id)
        return host.name if host is not None else host_id

    def container_label(self, host_id, name: str) -> str:
        return f"{self.host_label(host_id)}/{name}"

    def container(self, host_id, name: str):
        """(the present container named `name` on the host, None) or (None, why not)."""
        key = (str(host_id), name)
        if key not in self._found:
            self._found[key] = _find_container(self, str(host_id), name)
        return self._found[key]

    def forget_containers(self) -> None:
        self._found.clear()

    def container_entries(self) -> Iterator[tuple[dict, Any, ItemResult]]:
        """(entry, container, result) of every "containers" entry whose container exists; the
        others are recorded once as skipped, with the reason."""
        for index, entry in enumerate(self.items(CONTAINERS)):
            result = self._entries.get(index)
            container, reason = self.container(entry["host"], entry["name"])
            if result is None:
                result = self._entries[index] = self.item(CONTAINERS, self.container_label(entry["host"], entry["name"]))
                if container is None:
                    result.skip(reason)
            if container is not None and result.result != "skipped":
                yield entry, container, result

    # ---- report ---------------------------------------------------------------------------
    def report(self) -> dict:
        summary = {kind: dict.fromkeys(RESULTS, 0) for kind in kinds()}
        for result in self.results:
            summary.setdefault(result.kind, dict.fromkeys(RESULTS, 0))[result.result] += 1
        details = [r.as_dict() for r in self.results if r.result != "unchanged" or r.notes]
        return {
            "dry_run": self.dry_run,
            "summary": summary,
            "items": details,
            "engine_sync": self.engine_sync,
        }


def apply_values(obj, values: dict) -> list[str]:
    """Set the fields of `obj` that differ from `values`; returns their names (empty: none did)."""
    changed = []
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return changed


def rows_by_container(queryset, keys, *, many: bool = False, field: str = "container_id") -> dict:
    """Rows of `queryset` for these container keys, by key (a list each with many=True), read in
    chunks that every database accepts as IN parameters."""
    keys = list(keys)
    found: dict = {}
    for start in range(0, len(keys), 500):
        for row in queryset.filter(**{f"{field}__in": keys[start:start + 500]}):
            key = getattr(row, field)
            if many:
                found.setdefault(key, []).append(row)
            else:
                found[key] = row
    return found


def pair_up(wanted: list, existing: list, key) -> list[tuple[Any, Any]]:
    """Match file items to stored objects with the same natural key, in order: the first item
    with a key gets the oldest object with it, and so on (names need not be unique). Returns
    (item, object or None) for every item."""
    pool: dict[Any, list] = {}
    for obj in existing:
        pool.setdefault(key(obj), []).append(obj)
    pairs = []
    for item in wanted:
        bucket = pool.get(key(item))
        pairs.append((item, bucket.pop(0) if bucket else None))
    return pairs


def import_config(doc, *, dry_run: bool = False, user=None) -> dict:
    """Import a document (ConfigError when invalid: nothing is written). One transaction; a
    dry run rolls it back. Returns the report: per-kind counts and the items that changed, were
    skipped (with the reason) or need attention."""
    cleaned = validate(doc)
    mods = modules()
    ctx = ImportContext(cleaned, dry_run=dry_run, user=user)
    for module in mods:
        if hasattr(module, "prepare"):
            module.prepare(ctx)
    with transaction.atomic():
        for module in mods:
            module.import_(ctx)
        # Every "containers" entry gets its result, even when no app had a key to set on it.
        for _ in ctx.container_entries():
            pass
        if dry_run:
            transaction.set_rollback(True)
    return ctx.report()


def container_refs(ctx: ImportContext) -> set[tuple[str, str]]:
    """Every (host id, container name) the document refers to."""
    refs = {(entry["host"], entry["name"]) for entry in ctx.items(CONTAINERS)}
    for module in modules():
        refs.update((str(h), n) for h, n in module.container_refs(ctx))
    return refs


def _find_container(ctx: ImportContext, host_id: str, name: str) -> tuple[Container | None, str]:
    host = ctx.local_host(host_id)
    if host is None:
        if host_id in ctx.hosts or host_id in ctx.host_problems:
            return None, ctx.host_problems.get(host_id) or f"host {ctx.host_label(host_id)} was not imported"
        return None, f"host {host_id} is neither in the file nor in this DockMon"
    container = _present(ctx, host).get(name)
    if container is not None:
        return container, ""
    problem = ctx.host_problems.get(host_id)
    if problem:
        return None, f"no container named {name!r} is known on {host.name} yet: {problem}"
    return None, f"no container named {name!r} on {host.name} (its engine was asked); import again once it exists"


def _present(ctx: ImportContext, host: DockerHost) -> dict[str, Container]:
    """The host's present containers by name (one query per host; the newest of a name wins)."""
    cache = ctx.state.setdefault("present", {})
    if host.pk not in cache:
        rows = Container.objects.present().filter(host=host).select_related("host").order_by("first_seen_at", "key")
        cache[host.pk] = {container.name: container for container in rows}
    return cache[host.pk]
