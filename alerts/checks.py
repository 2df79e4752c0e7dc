"""System checks of the alerts app (`manage.py check`, and every start of the web process)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks


@checks.register("dockmon")
def public_url_check(app_configs=None, **kwargs):
    """Links in notifications point back to DockMon. Without DOCKMON_PUBLIC_URL they are derived
    from ALLOWED_HOSTS and PORT, which is right for `make run` on this machine but not behind a
    reverse proxy or under another name: say so when that guess is all there is."""
    from alerts.templating import _LOOPBACK, derived_base_url

    if (settings.DOCKMON_PUBLIC_URL or "").strip():
        url = settings.DOCKMON_PUBLIC_URL.strip()
        if not url.startswith(("http://", "https://")):
            return [checks.Warning("DOCKMON_PUBLIC_URL should be an absolute http(s) URL, e.g. https://dockmon.example.com",
                                   id="alerts.W002")]
        return []
    derived = derived_base_url()
    if not derived:
        return [checks.Warning(
            "DOCKMON_PUBLIC_URL is not set and ALLOWED_HOSTS holds only wildcards: links in notifications are relative.",
            hint="Set DOCKMON_PUBLIC_URL to the address people open DockMon at, e.g. https://dockmon.example.com",
            id="alerts.W001")]
    if (urlsplit(derived).hostname or "").lower() not in _LOOPBACK:
        return [checks.Warning(
            f"DOCKMON_PUBLIC_URL is not set: links in notifications use {derived} (from ALLOWED_HOSTS and PORT).",
            hint="Set DOCKMON_PUBLIC_URL when DockMon is reached through a proxy, over HTTPS or on another port.",
            id="alerts.W001")]
    return []
