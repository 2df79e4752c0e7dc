"""Where notification channels send: the outbound policy applied to every URL and host a
channel's settings name (filled in below)."""

from __future__ import annotations


def config_errors(transport, config: dict, *, user=None) -> dict:
    return {}
