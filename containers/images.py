"""Images of a host: list, inspect, remove, prune and pull (containers/engine/images.py does the
engine calls; this module adds who uses what, auditing and the event log)."""

from __future__ import annotations

import time

from containers import bus, engine, extensions
from containers.choices import EventCategory
from containers.engine import images as engine_images
from containers.engine import usage as engine_usage
from containers.engine_objects import ObjectError, client_of, epoch_to_datetime, in_use_message, key_of, record, users_of
from containers.models import Container

# Seconds between two `image.pull` progress messages of one pull.
PULL_PROGRESS_INTERVAL = 0.5


def _update_available(host) -> set[str]:
    """Image IDs that a container of the host runs and that has a newer release (updates app)."""
    rows = extensions.annotate(Container.objects.filter(host=host, removed_at__isnull=True), "update_available")
    return {image_id for image_id, flag in rows.values_list("image_id", "update_available") if flag and image_id}


def _row(host, image: engine_images.ImageSummary, uses: list, updates: set[str]) -> dict:
    return {
        "id": key_of(host, image.short_id), "host": str(host.pk), "repo_tags": list(image.repo_tags),
        "repo_digests": list(image.repo_digests), "size": image.size, "created": epoch_to_datetime(image.created),
        "containers": [key_of(host, use.short_id) for use in uses], "users": users_of(host, uses), "dangling": image.dangling,
        "update_available": image.image_id in updates, "labels": image.labels,
    }


def list_images(host, *, dangling: bool | None = None, search: str = "") -> list[dict]:
    with client_of(host) as client:
        images = engine_images.summaries(client)
        uses = engine_usage.containers_using(client)
    updates = _update_available(host)
    search = search.lower()
    rows = []
    for image in images:
        if dangling is not None and image.dangling != dangling:
            continue
        if search and not any(search in text.lower() for text in (image.image_id, *image.repo_tags, *image.repo_digests)):
            continue
        rows.append(_row(host, image, [u for u in uses if u.image_id == image.image_id], updates))
    return sorted(rows, key=lambda r: (r["repo_tags"][:1] or ["~"], r["id"]))


def image_detail(host, short_id: str) -> dict:
    with client_of(host) as client:
        try:
            image = engine_images.resolve(client, short_id)
            details = engine_images.detail(client, image.image_id)
        except engine_images.ImageGone as exc:
            raise ObjectError(str(exc), 404) from exc
        uses = [u for u in engine_usage.containers_using(client) if u.image_id == image.image_id]
    row = _row(host, image, uses, _update_available(host))
    for layer in details["history"]:
        layer["created"] = epoch_to_datetime(layer["created"])
    return {**row, **details}


def remove_image(host, short_id: str, *, force: bool, actor) -> None:
    # Guarded by the caller: `deploy` on the host.
    with client_of(host) as client:
        try:
            image = engine_images.resolve(client, short_id)
        except engine_images.ImageGone as exc:
            raise ObjectError(str(exc), 404) from exc
        name = image.repo_tags[0] if image.repo_tags else image.short_id
        uses = [u for u in engine_usage.containers_using(client) if u.image_id == image.image_id]
        # With force the engine still refuses an image a running container uses; without it,
        # any container (a stopped one too) keeps the image, named in the refusal.
        holding = uses if not force else [u for u in uses if u.state in ("running", "paused", "restarting")]
        if holding:
            message = in_use_message(f"Image {name}", host, holding)
            record(actor, host, "image.remove_refused", message, data={"image": image.image_id, "users": [u.name for u in holding]},
                   ok=False)
            raise ObjectError(message, 409, users=users_of(host, holding))
        try:
            engine_images.remove(client, image.image_id, force=force)
        except engine_images.ImageGone as exc:
            raise ObjectError(str(exc), 404) from exc
    record(actor, host, "image.removed", f"removed image {name} from {host.name}",
           data={"image": image.image_id, "repo_tags": list(image.repo_tags), "force": force})


def prune_images(host, *, dangling_only: bool, dry_run: bool, labels: list[str], actor) -> dict:
    """Remove the images no container uses (only untagged ones when `dangling_only`). The set is
    computed here, so the dry run lists exactly what the real run then removes."""
    # Guarded by the caller: `deploy` on the host.
    with client_of(host) as client:
        used = {use.image_id for use in engine_usage.containers_using(client)}
        candidates = engine_images.prune_candidates(client, used, dangling_only=dangling_only, labels=labels)
        removed, failed = [], []
        for image in candidates:
            if dry_run:
                removed.append(image)
                continue
            try:
                engine_images.remove_unused(client, image)
                removed.append(image)
            except engine.EngineError as exc:
                failed.append({"id": key_of(host, image.short_id), "error": str(exc)})
    answer = {
        "dry_run": dry_run,
        "images": [{"id": key_of(host, i.short_id), "repo_tags": list(i.repo_tags), "size": i.size} for i in removed],
        # Each image's own size: layers shared with images that stay are counted as well.
        "space_reclaimed": sum(i.size for i in removed),
        "failed": failed,
    }
    if not dry_run:
        record(actor, host, "image.pruned", f"pruned {len(removed)} images on {host.name}",
               data={"images": [i.image_id for i in removed], "space_reclaimed": answer["space_reclaimed"],
                     "dangling_only": dangling_only, "failed": failed})
    return answer


def check_pullable(host, ref: str) -> None:
    """Ask the registry (through the engine, with its settings) whether `ref` exists, so that a
    pull of a missing image is refused at once with the registry's answer instead of failing in
    the background."""
    with client_of(host) as client:
        try:
            engine_images.check_distribution(client, ref)
        except engine_images.RegistryRefused as exc:
            said = str(exc)
            if "unknown" in said.lower() or "not found" in said.lower():
                raise ObjectError(f"{ref} cannot be pulled: {said}", 404, field="image") from exc
            if exc.status is not None and exc.status >= 500:
                raise ObjectError(f"The registry of {ref} could not be asked: {said}", 502, field="image") from exc
            raise ObjectError(f"{ref} cannot be pulled: {said}", 400, field="image") from exc


def pull(host, ref: str, user) -> str:
    """Pull `ref` onto the host, announcing progress as `image.pull` messages (not stored); the
    outcome goes to the event log and the audit log. Returns the image ID."""
    # Guarded by the caller (the API view): `operate` on the host.
    last = [0.0]
    layers: dict = {}

    announced: set = set()

    def progress(done: int, total: int, status: str) -> None:
        # At most one message per interval, but a layer that starts is always told at once.
        now = time.monotonic()
        if now - last[0] < PULL_PROGRESS_INTERVAL and announced >= layers.keys():
            return
        last[0] = now
        announced.update(layers)
        bus.emit("image.pull", category=EventCategory.USER, host=host, persist=False, message=f"pull {ref}: {status}",
                 data={"host": str(host.pk), "image": ref, "status": status, "done": done, "total": total, "finished": False,
                       "layers": {layer: {"done": d, "total": t} for layer, (d, t) in layers.items()}})

    try:
        with client_of(host) as client:
            image_id = engine_images.pull(client, ref, on_progress=progress, on_layers=layers.update)
    except ObjectError as exc:
        bus.emit("image.pull", category=EventCategory.USER, host=host, persist=False, message=f"pull {ref} failed",
                 data={"host": str(host.pk), "image": ref, "status": "failed", "error": str(exc), "finished": True})
        record(user, host, "image.pull_failed", f"pull of {ref} on {host.name} failed: {exc}", data={"image": ref}, ok=False)
        raise
    bus.emit("image.pull", category=EventCategory.USER, host=host, persist=False, message=f"pulled {ref}",
             data={"host": str(host.pk), "image": ref, "status": "done", "id": image_id, "finished": True})
    record(user, host, "image.pulled", f"pulled {ref} on {host.name}", data={"image": ref, "id": image_id})
    return image_id
