"""DockMon's own counters (events emitted, Celery tasks finished), kept in Redis so that every
process (web, workers, monitor) adds to the same numbers. /metrics reads them."""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

EVENTS_KEY = "dockmon:metrics:events"
TASKS_KEY = "dockmon:metrics:tasks"
_local = threading.local()


def _redis():
    client = getattr(_local, "client", None)
    if client is None:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        _local.client = client
    return client


def count(key: str, field: str) -> None:
    """Add one to a shared counter; losing a count beats failing the caller."""
    try:
        _redis().hincrby(key, field, 1)
    except redis.RedisError:
        logger.debug("metrics counter %s/%s not updated", key, field)


def read(key: str) -> dict[str, int]:
    """Every field of one counter; empty when Redis does not answer."""
    try:
        return {k.decode(): int(v) for k, v in _redis().hgetall(key).items()}
    except redis.RedisError:
        return {}
