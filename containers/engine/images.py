"""Images on the engine: what a container runs (for the update checker), pulling and removing."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass

import docker.auth
import docker.errors
import requests.exceptions
from django.conf import settings

from containers.engine.errors import ENGINE_FAILURES, EngineError, wrap_error

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageFacts:
    image_id: str
    repo_tags: tuple[str, ...] = ()
    # "repo@sha256:..." for every registry manifest this image was pulled or pushed as.
    repo_digests: tuple[str, ...] = ()
    architecture: str = ""
    os: str = ""
    variant: str = ""


def _image_facts(data: dict) -> ImageFacts:
    return ImageFacts(
        image_id=data.get("Id") or "",
        repo_tags=tuple(t for t in data.get("RepoTags") or () if t and t != "<none>:<none>"),
        repo_digests=tuple(d for d in data.get("RepoDigests") or () if d and not d.startswith("<none>@")),
        architecture=data.get("Architecture") or "",
        os=data.get("Os") or "",
        variant=data.get("Variant") or "",
    )


def list_images(client) -> dict[str, ImageFacts]:
    """Every image on the engine by ID, from one list call (no platform fields: see inspect_image)."""
    try:
        items = client.api.images(all=False)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    return {facts.image_id: facts for facts in map(_image_facts, items)}


def inspect_image(client, image: str) -> ImageFacts:
    """One image with its platform (Architecture/Os/Variant); ContainerGone-like NotFound → EngineError."""
    try:
        data = client.api.inspect_image(image)
    except docker.errors.NotFound as exc:
        raise EngineError(f"The image {image} is not on the engine.") from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    return _image_facts(data)


def inspect_image_raw(client, ref: str) -> dict | None:
    try:
        return client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return None
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def pull(client, ref: str, on_progress=None, timeout: float = 600.0, on_layers=None) -> str:
    """Pull an image, reporting progress as (done_bytes, total_bytes, status) and, to
    `on_layers`, each layer's {id: (done_bytes, total_bytes)} so far; returns its ID.

    `timeout` bounds the whole pull: a registry that stalls (mid-blob, or before any byte) ends
    the pull with an EngineError once it has passed, instead of holding the caller for ever.
    The pull's connection is then closed, which makes the engine abandon the pull: the tag keeps
    naming the image it named before.
    """
    repository, tag = _split_ref(ref)
    api = client.api
    registry, _ = docker.auth.resolve_repository_name(repository)
    headers = {}
    auth_header = docker.auth.get_config_header(api, registry)
    if auth_header:
        headers["X-Registry-Auth"] = auth_header
    layers: dict[str, tuple[int, int]] = {}
    expired = threading.Event()
    started = time.monotonic()

    def too_slow() -> EngineError:
        return EngineError(f"Pull of {ref} did not finish within {timeout:g} s (the registry stalled or is too slow).")

    try:
        # The read timeout covers a stream that goes quiet; the watchdog covers one that trickles.
        response = api._post(api._url("/images/create"), params={"fromImage": repository, "tag": tag}, headers=headers,
                             stream=True, timeout=(settings.DOCKMON_ENGINE_TIMEOUT, timeout + 1))
        api._raise_for_status(response)

        def expire():
            expired.set()
            _cut_stream(response)

        watchdog = threading.Timer(max(0.0, timeout - (time.monotonic() - started)), expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            for item in api._stream_helper(response, decode=True):
                if "error" in item:
                    raise EngineError(f"Pull of {ref} failed: {item['error']}")
                detail = item.get("progressDetail") or {}
                if item.get("id") and detail.get("total"):
                    layers[item["id"]] = (int(detail.get("current") or 0), int(detail["total"]))
                if on_layers is not None:
                    on_layers(dict(layers))
                if on_progress is not None:
                    done = sum(c for c, _ in layers.values())
                    total = sum(t for _, t in layers.values())
                    on_progress(done, total, item.get("status", ""))
        except Exception as exc:
            if expired.is_set():  # however the cut stream ended the read
                raise too_slow() from exc
            raise
        finally:
            watchdog.cancel()
            response.close()
        if expired.is_set():
            raise too_slow()
        image = api.inspect_image(ref)
    except ENGINE_FAILURES as exc:
        if expired.is_set() or (isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)
                                and time.monotonic() - started >= timeout):
            raise too_slow() from exc
        raise wrap_error(exc) from exc
    except ValueError as exc:  # a stream cut in the middle of a JSON document
        raise EngineError(f"Pull of {ref} failed: the engine's answer was cut off ({exc})") from exc
    return image["Id"]


def _cut_stream(response) -> None:
    """End a streamed response from another thread: shut its socket down, which wakes the
    blocked read with an end of stream (closing the response here instead would race with the
    reader). Where no socket can be reached (ssh), closing is the fallback."""
    try:
        raw = response.raw._fp.fp.raw
        sock = getattr(raw, "_sock", raw)
        sock.shutdown(socket.SHUT_RDWR)
        return
    except (AttributeError, OSError):
        pass
    try:
        response.close()
    except Exception:  # closing is best effort
        logger.debug("closing a pull stream failed", exc_info=True)


def _split_ref(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    name, _, tag = ref.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return ref, "latest"


def remove_image(client, image: str) -> bool:
    """Remove an image that no container uses; False when it is in use (or already gone)."""
    try:
        client.api.remove_image(image, force=False, noprune=False)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.response is not None and exc.response.status_code == 409:
            return False
        raise wrap_error(exc) from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def tag(client, image_id: str, ref: str) -> None:
    """Point `ref` (repository:tag) at the image `image_id` (e.g. back at the image a stack ran
    before an update)."""
    repository, tag_name = _split_ref(ref)
    if tag_name and tag_name.startswith("sha256:"):
        raise EngineError(f"{ref} names a digest, not a tag: it cannot be pointed elsewhere.")
    try:
        client.api.tag(image_id, repository, tag_name or "latest", force=True)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


# --- images as objects people list, inspect, remove and prune ------------------------------
@dataclass(frozen=True)
class ImageSummary:
    image_id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    created: int  # seconds since the epoch (UTC)
    labels: dict

    @property
    def short_id(self) -> str:
        return self.image_id.removeprefix("sha256:")[:12]

    @property
    def dangling(self) -> bool:
        return not self.repo_tags


class ImageGone(EngineError):
    """No such image on the engine."""


def _summary(item: dict) -> ImageSummary:
    facts = _image_facts(item)
    return ImageSummary(image_id=facts.image_id, repo_tags=facts.repo_tags, repo_digests=facts.repo_digests,
                        size=int(item.get("Size") or 0), created=int(item.get("Created") or 0), labels=dict(item.get("Labels") or {}))


def summaries(client) -> list[ImageSummary]:
    """The engine's images (top-level ones, as `docker images` shows them)."""
    try:
        items = client.api.images(all=False)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    return [_summary(item) for item in items]


def matches_labels(labels: dict, wanted: list[str]) -> bool:
    """Docker's `label` filter: every `key` is present, every `key=value` holds."""
    for rule in wanted:
        key, has_value, value = rule.partition("=")
        if key not in labels or (has_value and labels[key] != value):
            return False
    return True


def resolve(client, short_id: str) -> ImageSummary:
    """The image whose ID starts with `short_id` (12 hex), or ImageGone."""
    for summary in summaries(client):
        if summary.short_id == short_id:
            return summary
    raise ImageGone(f"No image {short_id} on the engine.")


def detail(client, image_id: str) -> dict:
    """inspect plus history (layers with sizes and the commands that made them)."""
    try:
        data = client.api.inspect_image(image_id)
        history = client.api.history(image_id)
    except docker.errors.NotFound as exc:
        raise ImageGone(f"No image {image_id} on the engine.") from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    config = data.get("Config") or {}
    return {
        "architecture": data.get("Architecture") or "",
        "os": data.get("Os") or "",
        "config": {
            "env": list(config.get("Env") or []),
            "cmd": config.get("Cmd"),
            "entrypoint": config.get("Entrypoint"),
            "exposed_ports": sorted((config.get("ExposedPorts") or {}).keys()),
            "labels": dict(config.get("Labels") or {}),
            "working_dir": config.get("WorkingDir") or "",
            "user": config.get("User") or "",
        },
        "history": [
            {"id": layer.get("Id") or "", "created": int(layer.get("Created") or 0), "created_by": layer.get("CreatedBy") or "",
             "size": int(layer.get("Size") or 0), "comment": layer.get("Comment") or "", "tags": list(layer.get("Tags") or [])}
            for layer in history
        ],
    }


def remove(client, image_id: str, *, force: bool = False) -> None:
    """Remove one image; the engine's refusal (used by a container, several tags without
    force) is an EngineError carrying its words; ImageGone when it is not there."""
    try:
        client.api.remove_image(image_id, force=force, noprune=False)
    except docker.errors.NotFound as exc:
        raise ImageGone(f"No image {image_id} on the engine.") from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def prune_candidates(client, used_image_ids: set[str], *, dangling_only: bool, labels: list[str]) -> list[ImageSummary]:
    """What a prune removes: images no container (running or stopped) uses, only untagged ones
    when `dangling_only`, carrying every `labels` rule. The dry run shows exactly this list and
    the real run removes exactly it (the engine's own prune decides again at its moment)."""
    return sorted((
        image for image in summaries(client)
        if image.image_id not in used_image_ids
        and (image.dangling or not dangling_only)
        and matches_labels(image.labels, labels)
    ), key=lambda image: image.image_id)


def remove_unused(client, image: ImageSummary) -> None:
    """Remove an image found unused: each tag first (without force, so a container created
    since keeps it), then the image by ID if anything (a digest reference) still holds it."""
    for ref in image.repo_tags:
        remove(client, ref)
    try:
        remove(client, image.image_id)
    except ImageGone:
        pass  # the last tag took it


class RegistryRefused(EngineError):
    """The registry (asked through the engine) does not have the image or refused to say;
    `status` is the engine's HTTP status, the message the registry's words."""

    def __init__(self, message: str, status: int | None):
        super().__init__(message)
        self.status = status


def check_distribution(client, ref: str) -> None:
    """Ask the registry, through the engine and its settings, for `ref`'s manifest."""
    try:
        client.api.inspect_distribution(ref)
    except docker.errors.APIError as exc:
        status = exc.response.status_code if exc.response is not None else None
        raise RegistryRefused(exc.explanation or str(exc), status) from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
