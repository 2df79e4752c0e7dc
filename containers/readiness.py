"""Checks that judge whether a just-recreated container is healthy.

An update recreates a container and keeps the old one as a backup until the new one has shown it
works. Besides what the engine itself shows (the updates app's own gate), apps that check
containers register a readiness check here from their AppConfig.ready() (healthchecks: its HTTP
checks), so that the update gate asks them without importing them. They run in the order they
were registered.

A check is `check(readiness)`: it returns when the container passed, and raises NotReady with the
reason when it did not in time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class NotReady(Exception):
    """The container did not show it is healthy; the message says why (for the update's log)."""


@dataclass
class Readiness:
    """What a check gets to know about the container and may report back."""

    key: str  # the container's key ("" when its records could not follow it yet)
    name: str
    timeout: int  # seconds all checks have in total (for messages)
    deadline: float  # time.monotonic() by which every check must have passed
    log: Callable[[str], None]  # a line in the update's log
    progress: Callable[[str], None]  # a live progress note
    failure: Callable[[], str | None]  # why the container itself fails now, or None


_registry: dict[str, Callable[[Readiness], None]] = {}


def register(name: str, check: Callable[[Readiness], None]) -> None:
    _registry[name] = check


def registered() -> dict[str, Callable[[Readiness], None]]:
    return dict(_registry)


def run_checks(readiness: Readiness) -> None:
    """Every registered check in turn; the first NotReady ends it."""
    for check in list(_registry.values()):
        check(readiness)
