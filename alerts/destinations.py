"""Where notification channels send, under the outbound policy (dockmon_site/outbound.py).

Every notification is a POST (or an SMTP session) carrying alert texts, so choosing where a
channel sends is choosing a non-GET request: it needs an administrator, as for health checks
with another method than GET/HEAD. People granted `change` on a channel may still rename it,
turn it on and off, send tests and change its plain settings (chat, topic name...), as long as
the destination stays. A channel that uses the service's default URL (a setting) names no
destination of its own and may be created by anyone allowed to add channels.

When the destination is chosen, every URL and host it names is checked at save time (400 with
the field): never a registered engine's address:port, ports 2375/2376, link-local or metadata,
the administrators' deny/allow lists. The same policy is enforced again when sending (pinned
connections in Transport.post() and the SMTP transport), so a name that later resolves to an
engine is refused then.

Apprise makes its own HTTP calls, which DockMon cannot pin to a checked address: its hosts are
checked without a lookup (literal addresses fully; names against the metadata names and the
engines' names; the generic json/xml/form schemes are also resolved and checked) at save time
and before each delivery. That leaves a name re-pointed by DNS between the check and apprise's
own lookup; Apprise channels are therefore, like every destination, an administrator's choice.
"""

from __future__ import annotations

NEEDS_ADMIN = ("Only an administrator may choose where a channel sends (notifications are POST requests); "
               "the channel's current destination can be kept.")


def is_administrator(user) -> bool:
    from accounts.roles import is_administrator as check

    return check(user)


def config_errors(transport, config: dict, *, user, previous: dict | None) -> dict:
    """Field errors for the destination of `config` (the merged settings a change would store).
    `previous`: the destination stored before (None for a new channel or a new kind): an
    unchanged destination is not checked again (the runtime check still applies)."""
    destination = transport.destination(config)
    if previous is not None and destination == previous:
        return {}
    changed = sorted(k for k in set(destination) | set(previous or {}) if destination.get(k) != (previous or {}).get(k))
    if not is_administrator(user):
        # Going back to the service's default (no destination of its own) is allowed.
        named = [k for k in changed if k in destination]
        return dict.fromkeys(named, NEEDS_ADMIN)
    return policy_errors(transport, config)


def policy_errors(transport, config: dict) -> dict:
    """The outbound policy on every URL and host the settings name (administrator or not)."""
    from django.conf import settings

    from dockmon_site import outbound

    errors = {}
    for name, url in transport.user_urls(config).items():
        try:
            outbound.validate_url(url, method="POST", admin=True)
        except ValueError as exc:
            errors[name] = str(exc)
    if transport.kind == "email" and (config.get("host") or config.get("port")):
        host = config.get("host") or settings.DOCKMON_SMTP_HOST
        try:
            outbound.check_host_port(host, int(config.get("port") or settings.DOCKMON_SMTP_PORT), resolve=False)
        except (ValueError, TypeError) as exc:
            errors["host"] = str(exc)
    if transport.kind == "apprise" and config.get("url"):
        from alerts.transports.apprise_url import policy_error

        problem = policy_error(str(config["url"]))
        if problem:
            errors["url"] = problem
    return errors


def change_errors(channel, user) -> dict:
    """config_errors() for a channel instance holding the new settings (a form's instance after
    it was filled in, e.g. the admin's): compared with the destination it was loaded with."""
    from alerts.transports import TRANSPORTS, transport_class

    if channel.kind not in TRANSPORTS:
        return {}
    stored = getattr(channel, "_stored_destination", None)
    previous = stored[1] if stored is not None and stored[0] == channel.kind else None
    return config_errors(transport_class(channel.kind), channel.full_config, user=user, previous=previous)
