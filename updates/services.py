"""Update detection: compare what each container runs with what its registry offers.

One check run:
  1. loads the containers (by key, by host, or all present ones on enabled hosts) and their
     ContainerUpdate rows;
  2. asks each host's engine once for its images (RepoDigests, image IDs) — hosts in parallel;
  3. classifies every container: pinned to a digest, local image (never pulled from / pushed to
     its registry), created from an image ID, or checkable;
  4. asks the registries, in parallel, once per distinct question: one HEAD per distinct
     image reference (shared by every container on every host using it), one tag list per
     repository for version tracking, and — only for multi-arch indexes whose digest is not one
     the image was pulled as — the index and the platform manifest (GETs, cached by digest):
     updates.lookups asks them and caches the answers;
  5. decides each image's containers as soon as the registry's answer for that image is in (a
     HEAD, or the index look for a multi-arch image), saves those rows, announces
     `update.available` for each container that newly has an update, and sends the per-container
     `update.check` results right then: the Updates page fills in while the check goes on.

An update is reported only when the registry positively offers something other than what runs:
the registry digest is compared with *all* of the image's RepoDigests, then with the platform
entry of an index, then with the image ID (the config digest), so an update done outside
DockMon, or a change to another platform of a multi-arch image, is never a false positive.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from containers import bus, engine
from containers.choices import EventCategory, Severity
from containers.engine import images as engine_images
from containers.models import Container
from dockmon_site import outbound_engines
from updates.choices import TrackingMode, UpdateStatus
from updates.lookups import Lookups, registry_credentials
from updates.models import ContainerUpdate
from updates.registry import (
    ImageReference,
    Manifest,
    ManifestHead,
    Platform,
    RegistryClient,
    RegistryError,
    is_image_id,
    parse_reference,
)
from updates.versions import newest_allowed, parse_version

logger = logging.getLogger(__name__)

_SAVED_FIELDS = [
    "image", "current_digest", "current_version", "latest_digest", "latest_version", "update_available",
    "status", "error", "checked_at", "available_since", "announced_digest", "updated_at",
]


@dataclass
class CheckSummary:
    check: str
    total: int = 0
    statuses: dict = field(default_factory=dict)
    updates: list = field(default_factory=list)
    newly_available: list = field(default_factory=list)
    host_errors: dict = field(default_factory=dict)
    registry_stats: dict = field(default_factory=dict)
    cache_hits: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "check": self.check, "total": self.total, "statuses": self.statuses, "updates": self.updates,
            "newly_available": self.newly_available, "host_errors": self.host_errors,
            "registry_stats": self.registry_stats, "cache_hits": self.cache_hits, "seconds": round(self.seconds, 3),
        }


@dataclass
class _Target:
    container: Container
    row: ContainerUpdate
    ref: ImageReference | None = None
    image: engine_images.ImageFacts | None = None
    digests: set = field(default_factory=set)  # every digest the running image is known by
    candidate_tag: str = ""



def _select_containers(container_keys=None, host_ids=None):
    qs = Container.objects.present().filter(host__enabled=True).select_related("host").order_by("host_id", "name")
    if container_keys is not None:
        qs = qs.filter(pk__in=list(container_keys))
    if host_ids is not None:
        qs = qs.filter(host_id__in=[str(h) for h in host_ids])
    return list(qs)


def _rows_for(containers) -> dict[str, ContainerUpdate]:
    keys = [c.pk for c in containers]
    rows = {row.container_id: row for row in ContainerUpdate.objects.filter(container_id__in=keys)}
    missing = [ContainerUpdate(container_id=k) for k in keys if k not in rows]
    if missing:
        ContainerUpdate.objects.bulk_create(missing, ignore_conflicts=True, batch_size=500)
        rows.update({row.container_id: row for row in ContainerUpdate.objects.filter(container_id__in=[m.container_id for m in missing])})
    return rows


def _engine_images(hosts) -> tuple[dict, dict, dict]:
    """({host_id: {image_id: ImageFacts}}, {host_id: error}, {host_id: client}) — one list call per host."""

    def one(host):
        try:
            client = engine.client_for_host(host)
            return host.pk, client, engine_images.list_images(client), None
        except engine.EngineError as exc:
            return host.pk, None, None, str(exc)

    images, errors, clients = {}, {}, {}
    hosts = list(hosts)
    workers = max(1, min(len(hosts), 16))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="engine") as pool:
        for host_id, client, result, error in pool.map(one, hosts):
            if error is not None:
                errors[host_id] = error
            else:
                images[host_id], clients[host_id] = result, client
    return images, errors, clients


def _repo_digests(image: engine_images.ImageFacts, ref: ImageReference) -> set[str]:
    """Digests the image has in `ref`'s repository (RepoDigests of other repositories don't count)."""
    found = set()
    for item in image.repo_digests:
        try:
            other = parse_reference(item)
        except ValueError:
            continue
        if other.registry == ref.registry and other.repository == ref.repository and other.digest:
            found.add(other.digest)
    return found


def _classify(target: _Target, images: dict) -> None:
    """Fill target.ref / image / digests, or set a final status on the row."""
    container, row = target.container, target.row
    image_ref = container.image or ""
    row.image = image_ref
    try:
        target.ref = parse_reference(image_ref)
    except ValueError as exc:
        if is_image_id(image_ref) or not image_ref:
            _final(row, UpdateStatus.UNSUPPORTED, "The container was created from an image ID, not a name: there is no tag to check.")
        else:
            _final(row, UpdateStatus.UNSUPPORTED, f"{image_ref!r} is not an image reference ({exc}).")
        return
    ref = target.ref
    row.current_version = ref.tag
    if ref.pinned:
        row.current_digest = ref.digest
        _final(row, UpdateStatus.PINNED, f"Pinned to {ref.digest}: a digest never changes, so there is nothing to check.")
        return
    target.image = images.get(container.image_id)
    if target.image is None:
        _final(row, UpdateStatus.UNSUPPORTED, f"The image {container.image_id[:19]} is no longer on the engine.")
        return
    target.digests = _repo_digests(target.image, ref)
    if not target.digests:
        row.current_digest = ""
        _final(row, UpdateStatus.LOCAL_IMAGE,
               f"The image was built or tagged locally: it was never pulled from or pushed to {ref.name}.")
        return
    row.current_digest = sorted(target.digests)[0]


def _final(row: ContainerUpdate, status: str, error: str = "") -> None:
    row.status = status
    row.error = error if status != UpdateStatus.OK else ""
    row.update_available = status == UpdateStatus.UPDATE_AVAILABLE
    if status in (UpdateStatus.PINNED, UpdateStatus.LOCAL_IMAGE, UpdateStatus.UNSUPPORTED):
        row.latest_digest = ""
        row.latest_version = ""


def _mode(row: ContainerUpdate, ref: ImageReference) -> str:
    mode = row.tracking_mode or TrackingMode.EXACT
    if mode != TrackingMode.EXACT and parse_version(ref.tag) is None:
        return TrackingMode.EXACT  # "latest", "stable"...: nothing to order, follow the tag
    return mode


def check(container_keys=None, host_ids=None, *, force: bool = False, check_id: str | None = None,
          client: RegistryClient | None = None) -> CheckSummary:
    """Run one update check (see the module docstring). force=True bypasses the tag cache."""
    started = time.monotonic()
    summary = CheckSummary(check=check_id or uuid.uuid4().hex)
    containers = _select_containers(container_keys, host_ids)
    summary.total = len(containers)
    bus.emit("update.check", category=EventCategory.UPDATE, persist=False,
             data={"check": summary.check, "stage": "started", "total": summary.total})
    rows = _rows_for(containers)
    hosts = {c.host_id: c.host for c in containers}
    images, host_errors, clients = _engine_images(hosts.values())
    summary.host_errors = {str(k): v for k, v in host_errors.items()}
    client = client or RegistryClient(registry_credentials())
    outbound_engines.refresh_engine_targets()  # the engines the policy refuses, read here: lookups run in threads
    run = Lookups(force, client)
    now = timezone.now()
    results = _Results(summary, containers, rows, now)

    try:
        targets: list[_Target] = []
        settled: list[ContainerUpdate] = []
        for container in containers:
            row = rows[container.pk]
            if container.host_id in host_errors:
                # Nothing is known about what runs there now: keep the last answer, say why it is old.
                row.error = f"Engine unreachable, result not refreshed: {host_errors[container.host_id]}"
                settled.append(row)
                continue
            target = _Target(container, row)
            _classify(target, images[container.host_id])
            row.checked_at = now
            targets.append(target)
        live = [t for t in targets if t.image is not None and t.digests and t.ref is not None]
        live_ids = {id(t) for t in live}
        # Pinned, local and unsupported images (and unreachable engines) need no registry.
        results.done(settled + [t.row for t in targets if id(t) not in live_ids])

        # Phase 1: tag lists for version tracking.
        tag_names = set()
        for t in live:
            run.refs.setdefault(t.ref.name, t.ref)
            if _mode(t.row, t.ref) != TrackingMode.EXACT:
                tag_names.add(t.ref.name)
        run.fetch_tags(tag_names)
        # Phase 2: the newest allowed version tag of each tracking container, then one HEAD per
        # distinct reference; each image's containers are decided as soon as its answer is in,
        # unless it is a multi-arch index that needs a closer look (phase 3).
        waiting: dict[tuple[str, str], list[_Target]] = defaultdict(list)
        for t in live:
            mode = _mode(t.row, t.ref)
            tags = run.tags.get(t.ref.name)
            if mode != TrackingMode.EXACT and isinstance(tags, list):
                best = newest_allowed(t.ref.tag, tags, mode, t.row.include_prerelease)
                if best is not None:
                    t.candidate_tag = best.tag
            waiting[(t.ref.name, t.candidate_tag or t.ref.tag)].append(t)
        closer_look: list[_Target] = []

        def answered(wanted, head):
            decided = []
            for t in waiting.pop(wanted, []):
                if isinstance(head, ManifestHead) and head.is_index and head.digest not in t.digests:
                    closer_look.append(t)
                else:
                    _decide(run, t, {})
                    decided.append(t.row)
            results.done(decided)

        run.fetch_heads(set(waiting), on_result=answered)
        for wanted in list(waiting):  # answered from an earlier phase of this run (none today)
            answered(wanted, run.heads.get(wanted))

        # Phase 3: multi-arch indexes whose digest the image does not carry.
        platforms = _platforms_needed(run, closer_look, clients)
        index_wanted = {(t.ref.name, _head_for(run, t).digest) for t in closer_look}
        run.fetch_manifests(index_wanted)
        platform_wanted = set()
        for t in closer_look:
            index = run.manifests.get((t.ref.name, _head_for(run, t).digest))
            platform = platforms.get((t.container.host_id, t.image.image_id))
            if isinstance(index, Manifest) and isinstance(platform, Platform):
                pd = index.platform_digest(platform)
                if pd and pd not in t.digests:
                    platform_wanted.add((t.ref.name, pd))
        run.fetch_manifests(platform_wanted)
        by_image: dict[tuple[str, str], list[ContainerUpdate]] = defaultdict(list)
        for t in closer_look:
            _decide(run, t, platforms)
            by_image[(t.ref.name, t.candidate_tag or t.ref.tag)].append(t.row)
        for decided in by_image.values():
            results.done(decided)
    finally:
        for c in clients.values():
            try:
                c.close()
            except Exception:  # closing is best effort
                logger.debug("closing an engine client failed", exc_info=True)
    results.flush()

    counts: dict[str, int] = defaultdict(int)
    for row in rows.values():
        counts[str(row.status)] += 1
        if row.update_available:
            summary.updates.append(row.container_id)
    summary.statuses = dict(counts)
    summary.registry_stats = dict(client.stats)
    summary.cache_hits = run.cache_hits
    summary.seconds = time.monotonic() - started
    bus.emit("update.check", category=EventCategory.UPDATE, persist=False,
             data={"check": summary.check, "stage": "finished", "total": summary.total,
                   "updates": len(summary.updates), "statuses": summary.statuses, "seconds": round(summary.seconds, 3)})
    return summary


# Per-container results of a check go out live (the Updates page) for checks up to this size;
# bigger ones send per-host progress (how many of the host's containers are decided so far, at
# most every HOST_PROGRESS_SECONDS), which keeps a full check of thousands cheap.
CHECK_EVENTS_PER_CONTAINER_LIMIT = 500
HOST_PROGRESS_SECONDS = 0.25


class _Results:
    """Saves and announces decided rows as the check goes: each call of done() is one image's
    containers (or the ones that needed no registry), written together and sent out on commit."""

    def __init__(self, summary: CheckSummary, containers, rows: dict, now):
        self.summary, self.rows, self.now = summary, rows, now
        self.by_key = {c.pk: c for c in containers}
        self.previous = {key: row.update_available for key, row in rows.items()}
        self.per_container = len(containers) <= CHECK_EVENTS_PER_CONTAINER_LIMIT
        self.host_total: dict = defaultdict(int)
        for c in containers:
            self.host_total[c.host_id] += 1
        self.host_done: dict = defaultdict(int)
        self.host_updates: dict = defaultdict(int)
        self.dirty_hosts: set = set()
        self.last_host_progress = 0.0
        self.saved: set[str] = set()

    def done(self, decided: list[ContainerUpdate]) -> None:
        decided = [row for row in decided if row.container_id not in self.saved]
        if not decided:
            return
        announce = []
        for row in decided:
            self.saved.add(row.container_id)
            if row.update_available:
                if not self.previous.get(row.container_id):
                    row.available_since = self.now
            else:
                row.available_since = None
            row.updated_at = self.now
            if row.update_available and row.latest_digest != row.announced_digest:
                # Announce each offered digest once, however often the check runs or the registry flaps.
                row.announced_digest = row.latest_digest
                announce.append(row)
        with transaction.atomic():
            _save_rows(decided)
            for row in announce:
                self.summary.newly_available.append(row.container_id)
                _announce(self.by_key[row.container_id], row)
            if self.per_container:
                _progress_events(self.summary.check, [self.by_key[row.container_id] for row in decided], self.rows)
            else:
                for row in decided:
                    host_id = self.by_key[row.container_id].host_id
                    self.host_done[host_id] += 1
                    self.host_updates[host_id] += int(row.update_available)
                    self.dirty_hosts.add(host_id)
                if time.monotonic() - self.last_host_progress >= HOST_PROGRESS_SECONDS:
                    self._host_progress()

    def flush(self) -> None:
        """Whatever is left: rows no answer decided (an error on the way) and the last host progress."""
        rest = [row for key, row in self.rows.items() if key not in self.saved]
        if rest:
            self.done(rest)
        if self.dirty_hosts:
            with transaction.atomic():
                self._host_progress()

    def _host_progress(self) -> None:
        self.last_host_progress = time.monotonic()
        for host_id in sorted(self.dirty_hosts, key=str):
            bus.emit("update.check", category=EventCategory.UPDATE, persist=False, host=host_id,
                     data={"check": self.summary.check, "stage": "host", "host": str(host_id), "done": self.host_done[host_id],
                           "total": self.host_total[host_id], "updates": self.host_updates[host_id]})
        self.dirty_hosts.clear()


def _progress_events(check_id: str, containers, rows) -> None:
    """Per-container `update.check` results that reach everyone allowed to see them: staff-only
    events (no host, no container) would leave users granted a host or a container without live
    progress."""
    for container in containers:
        row = rows[container.pk]
        bus.emit("update.check", category=EventCategory.UPDATE, persist=False, host=container.host_id, container=container,
                 data={"check": check_id, "stage": "container", "key": container.pk, "status": row.status,
                       "update_available": row.update_available, "latest_version": row.latest_version,
                       "latest_digest": row.latest_digest, "error": row.error})


def _save_rows(rows) -> None:
    """Write every row with one UPDATE per distinct set of values.

    Containers sharing an image share the outcome, so a run over thousands of containers is a few
    dozen statements; bulk_update's per-row CASE expressions cost seconds at that size."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for row in rows:
        groups[tuple(getattr(row, name) for name in _SAVED_FIELDS)].append(row.pk)
    for values, pks in groups.items():
        for start in range(0, len(pks), 500):
            ContainerUpdate.objects.filter(pk__in=pks[start:start + 500]).update(**dict(zip(_SAVED_FIELDS, values, strict=True)))


def _head_for(run: Lookups, t: _Target):
    """The registry answer this target is judged on: its candidate version's tag, else its own tag."""
    if t.candidate_tag:
        return run.heads.get((t.ref.name, t.candidate_tag))
    return run.heads.get((t.ref.name, t.ref.tag))


def _platforms_needed(run: Lookups, live, clients) -> dict:
    """Inspect (once per host and image) the images whose registry answer is a multi-arch index."""
    needed = set()
    for t in live:
        head = _head_for(run, t)
        if isinstance(head, ManifestHead) and head.is_index and head.digest not in t.digests:
            needed.add((t.container.host_id, t.image.image_id))

    def one(item):
        host_id, image_id = item
        try:
            facts = engine_images.inspect_image(clients[host_id], image_id)
        except engine.EngineError as exc:
            return exc
        return Platform.normalized(facts.os, facts.architecture, facts.variant)

    items = sorted(needed)
    return dict(zip(items, run.parallel(one, items), strict=True))


def _decide(run: Lookups, t: _Target, platforms: dict) -> None:
    row, ref = t.row, t.ref
    tags = run.tags.get(ref.name)
    if isinstance(tags, RegistryError) and _mode(row, ref) != TrackingMode.EXACT:
        _final(row, UpdateStatus.REGISTRY_ERROR, f"Cannot list the tags of {ref.name}: {tags}")
        return
    head = _head_for(run, t)
    version = t.candidate_tag or ref.tag
    if isinstance(head, RegistryError) or head is None:
        _final(row, UpdateStatus.REGISTRY_ERROR, str(head or "no answer"))
        return
    same, detail = _runs(run, t, head, platforms)
    if same is None:
        _final(row, UpdateStatus.REGISTRY_ERROR, detail)
        return
    row.latest_digest = head.digest
    row.latest_version = version
    if same:
        # A newer version tag that holds exactly the image that runs is no update.
        row.latest_version = version if not t.candidate_tag else ref.tag
        _final(row, UpdateStatus.OK)
    else:
        _final(row, UpdateStatus.UPDATE_AVAILABLE)


def _runs(run: Lookups, t: _Target, head: ManifestHead, platforms: dict) -> tuple[bool | None, str]:
    """Whether the registry's manifest is what the container runs (None: cannot tell, with why)."""
    if head.digest in t.digests:
        return True, ""
    if not head.is_index:
        return False, ""
    index = run.manifests.get((t.ref.name, head.digest))
    if isinstance(index, RegistryError) or index is None:
        return None, f"Cannot read the multi-arch index of {t.ref}: {index or 'no answer'}"
    platform = platforms.get((t.container.host_id, t.image.image_id))
    if not isinstance(platform, Platform):
        return None, f"Cannot tell the image's platform: {platform}"
    platform_digest = index.platform_digest(platform)
    if not platform_digest:
        return None, f"{t.ref} has no image for {platform} any more."
    if platform_digest in t.digests:
        return True, ""
    manifest = run.manifests.get((t.ref.name, platform_digest))
    if isinstance(manifest, RegistryError) or manifest is None:
        return None, f"Cannot read the {platform} manifest of {t.ref}: {manifest or 'no answer'}"
    # An image pulled through an index only records the index digest; the platform manifest's
    # config digest is the image ID, which identifies what runs whatever the index did.
    return manifest.config_digest == t.image.image_id, ""


def _announce(container: Container, row: ContainerUpdate) -> None:
    current = row.current_version or row.current_digest[:19]
    latest = row.latest_version if row.latest_version != row.current_version else row.latest_digest[:19]
    bus.emit(
        "update.available",
        category=EventCategory.UPDATE,
        severity=Severity.INFO,
        host=container.host_id,
        container=container,
        message=f"{container.name}: an update is available for {row.image} ({current} → {latest})",
        data={
            "key": container.key, "name": container.name, "image": row.image,
            "current_digest": row.current_digest, "current_version": row.current_version,
            "latest_digest": row.latest_digest, "latest_version": row.latest_version,
            "tracking_mode": row.tracking_mode,
        },
    )


# ---------------------------------------------------------------------------
# Following a container across re-creation
# ---------------------------------------------------------------------------
def move_records(old, new) -> None:
    """Move the update record and the per-container policy from `old` to `new` (same transaction)."""
    from updates.models import UpdatePolicy

    old_row = ContainerUpdate.objects.filter(container_id=old.pk).first()
    if old_row is not None:
        new_row = ContainerUpdate.objects.filter(container_id=new.pk).first()
        if new_row is None:
            old_row.container_id = new.pk
            new_row = old_row
        else:
            # The settings a person chose survive; the state is about the new container anyway.
            new_row.tracking_mode, new_row.include_prerelease = old_row.tracking_mode, old_row.include_prerelease
            old_row.delete()
        if old.image_id != new.image_id or old.image != new.image:
            # What runs changed: the old findings say nothing about the new image.
            new_row.status, new_row.update_available, new_row.error = UpdateStatus.UNCHECKED, False, ""
            new_row.current_digest, new_row.available_since = "", None
            new_row.image = new.image
        new_row.save()
    policy = UpdatePolicy.objects.filter(container_id=old.pk).first()
    if policy is not None:
        if UpdatePolicy.objects.filter(container_id=new.pk).exists():
            policy.delete()  # a policy already set on the new container is the newer wish
        else:
            UpdatePolicy.objects.filter(pk=policy.pk).update(container_id=new.pk)
