"""Notification transports: one small class per kind, found through this registry.

The registry maps a channel kind to its label and the dotted path of its Transport class; the
labels drive NotificationChannel.kind's choices, so adding a transport is one line here and one
class (healthchecks' transports.py shape).
"""

from __future__ import annotations

import functools

from django.utils.module_loading import import_string

TRANSPORTS: dict[str, tuple[str, str]] = {
    "pushover": ("Pushover", "alerts.transports.services.Pushover"),
    "telegram": ("Telegram", "alerts.transports.services.Telegram"),
    "discord": ("Discord", "alerts.transports.services.Discord"),
    "slack": ("Slack", "alerts.transports.services.Slack"),
    "teams": ("Microsoft Teams", "alerts.transports.services.Teams"),
    "googlechat": ("Google Chat", "alerts.transports.services.GoogleChat"),
    "gotify": ("Gotify", "alerts.transports.services.Gotify"),
    "ntfy": ("ntfy", "alerts.transports.services.Ntfy"),
    "email": ("Email (SMTP)", "alerts.transports.email.Email"),
    "webhook": ("Webhook (JSON)", "alerts.transports.services.Webhook"),
    "apprise": ("Apprise URL", "alerts.transports.apprise_url.AppriseURL"),
}
CHANNEL_KINDS = [(kind, label) for kind, (label, _) in TRANSPORTS.items()]


def transport_class(kind: str):
    return import_string(TRANSPORTS[kind][1])


@functools.cache
def secret_settings() -> frozenset[str]:
    """Every setting name some transport keeps secret (the audit log masks these whatever the
    kind a request names)."""
    return frozenset(name for _, path in TRANSPORTS.values() for name in import_string(path).secret_fields)
