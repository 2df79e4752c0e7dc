"""The registry questions of one update check, and the cache they share between checks.

A check asks each question once, however many containers on however many hosts it concerns:
one HEAD per image reference, one tag list per repository, one GET per manifest digest. Lookups
asks them in parallel (DOCKMON_REGISTRY_CONCURRENCY) and keeps the answers in the cache: version
tags and `latest`-style tags for a short while, manifests by digest for long (they never change).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, as_completed

from django.conf import settings
from django.core.cache import cache

from updates.models import RegistryCredential
from updates.registry import Credential, ImageReference, Manifest, ManifestHead, RegistryClient, RegistryError
from updates.versions import parse_version

logger = logging.getLogger(__name__)

_CACHE_PREFIX = "updates:v1"


# ---------------------------------------------------------------------------
# Credentials and cache
# ---------------------------------------------------------------------------
def registry_credentials() -> dict[str, Credential]:
    # A user name without its password (dropped when the registry moved) is not used: the
    # registry is asked anonymously until the password is entered again.
    return {
        cred.registry: Credential(cred.username if cred.password else "", cred.password, cred.ca_cert, cred.insecure)
        for cred in RegistryCredential.objects.all()
    }


def _head_ttl(tag: str) -> int:
    # A version tag is rebuilt now and then (security fixes); `latest`-style tags move often.
    if parse_version(tag) is None:
        return settings.DOCKMON_UPDATE_CACHE_MUTABLE_SECONDS
    return settings.DOCKMON_UPDATE_CACHE_SECONDS


def _cache_get_many(keys: list[str]) -> dict:
    if not keys:
        return {}
    try:
        return cache.get_many(keys)
    except Exception:  # the cache is an optimisation: a dead Redis must not stop a check
        logger.warning("update cache unavailable; asking the registries directly", exc_info=True)
        return {}


def _cache_set(key: str, value, ttl: int) -> None:
    try:
        cache.set(key, value, ttl)
    except Exception:
        logger.warning("could not write the update cache", exc_info=True)


def _head_key(name: str, tag: str) -> str:
    return f"{_CACHE_PREFIX}:head:{name}:{tag}"


def _tags_key(name: str) -> str:
    return f"{_CACHE_PREFIX}:tags:{name}"


def _manifest_key(name: str, digest: str) -> str:
    return f"{_CACHE_PREFIX}:manifest:{name}@{digest}"


def clear_cache() -> None:
    """Forget cached registry answers (tests, or after changing credentials)."""
    backend = getattr(cache, "_cache", None)
    if backend is None or not hasattr(backend, "get_client"):
        cache.clear()  # local-memory cache (tests): nothing else lives there worth keeping
        return
    client = backend.get_client(None, write=True)  # Django's RedisCache has no delete_pattern
    prefix = cache.make_key(f"{_CACHE_PREFIX}:")
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


# ---------------------------------------------------------------------------
# The lookups of one check
# ---------------------------------------------------------------------------
class Lookups:
    """The answers of one check run; force=True asks again what the cache knows (not manifests)."""

    def __init__(self, force: bool, client: RegistryClient):
        self.force = force
        self.client = client
        self.workers = settings.DOCKMON_REGISTRY_CONCURRENCY
        self.heads: dict[tuple[str, str], ManifestHead | RegistryError] = {}
        self.tags: dict[str, list[str] | RegistryError] = {}
        self.manifests: dict[tuple[str, str], Manifest | RegistryError] = {}
        self.refs: dict[str, ImageReference] = {}
        self.cache_hits = 0

    def parallel(self, func, items):
        items = list(items)
        if not items:
            return []
        if len(items) == 1 or self.workers <= 1:
            return [func(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items)), thread_name_prefix="registry") as pool:
            return list(pool.map(func, items))

    def _as_completed(self, func, items):
        """(item, func(item)) pairs in the order the answers arrive (yielded in the caller's thread)."""
        items = list(items)
        if len(items) <= 1 or self.workers <= 1:
            for item in items:
                yield item, func(item)
            return
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items)), thread_name_prefix="registry") as pool:
            futures = {pool.submit(func, item): item for item in items}
            for future in as_completed(futures):
                yield futures[future], future.result()

    @staticmethod
    def _safely(func, *args):
        try:
            return func(*args)
        except RegistryError as exc:
            return exc
        except Exception as exc:  # a bug or an odd answer must cost one image, not the run
            logger.exception("registry lookup failed")
            return RegistryError(f"Unexpected error: {exc}")

    def fetch_heads(self, wanted: set[tuple[str, str]], on_result=None) -> None:
        """HEAD each (name, tag) once; on_result(w, answer) is called (in this thread) for each
        answer as soon as it is in, cached ones first."""
        wanted = {w for w in wanted if w not in self.heads}
        keys = {w: _head_key(*w) for w in wanted}
        cached = {} if self.force else _cache_get_many(list(keys.values()))
        todo = []
        for w in sorted(wanted):
            hit = cached.get(keys[w])
            if hit:
                self.cache_hits += 1
                self.heads[w] = ManifestHead(hit["digest"], hit["media_type"])
                if on_result is not None:
                    on_result(w, self.heads[w])
            else:
                todo.append(w)
        answers = self._as_completed(lambda w: self._safely(self.client.head_manifest, self.refs[w[0]].with_tag(w[1])), todo)
        for w, result in answers:
            self.heads[w] = result
            if isinstance(result, ManifestHead):
                _cache_set(keys[w], {"digest": result.digest, "media_type": result.media_type}, _head_ttl(w[1]))
            if on_result is not None:
                on_result(w, result)

    def fetch_tags(self, names: set[str]) -> None:
        names = {n for n in names if n not in self.tags}
        cached = {} if self.force else _cache_get_many([_tags_key(n) for n in names])
        todo = []
        for name in names:
            hit = cached.get(_tags_key(name))
            if hit is not None:
                self.cache_hits += 1
                self.tags[name] = hit
            else:
                todo.append(name)
        results = self.parallel(lambda n: self._safely(self.client.list_tags, self.refs[n]), todo)
        for name, result in zip(todo, results, strict=True):
            self.tags[name] = result
            if isinstance(result, list):
                _cache_set(_tags_key(name), result, settings.DOCKMON_UPDATE_CACHE_MUTABLE_SECONDS)

    def fetch_manifests(self, wanted: set[tuple[str, str]]) -> None:
        """Manifests by digest: immutable, so cached for long and read from cache even when forced."""
        wanted = {w for w in wanted if w not in self.manifests}
        keys = {w: _manifest_key(*w) for w in wanted}
        cached = _cache_get_many(list(keys.values()))
        todo = []
        for w in wanted:
            hit = cached.get(keys[w])
            if hit:
                self.cache_hits += 1
                self.manifests[w] = Manifest(w[1], hit["media_type"], hit["body"])
            else:
                todo.append(w)
        results = self.parallel(lambda w: self._safely(self.client.get_manifest, self.refs[w[0]], w[1]), todo)
        for w, result in zip(todo, results, strict=True):
            self.manifests[w] = result
            if isinstance(result, Manifest):
                _cache_set(keys[w], {"media_type": result.media_type, "body": result.body},
                           settings.DOCKMON_UPDATE_CACHE_IMMUTABLE_SECONDS)
