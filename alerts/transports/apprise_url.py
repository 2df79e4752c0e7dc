"""Apprise: one URL (or several, space-separated) for the long tail of services.

Apprise only sends what it is given: no configuration or plugin is fetched at run time (no
AppriseConfig, no remote attachments). It does not report why a delivery failed, so failures
are retried and never disable the channel on their own. It makes its own HTTP calls, which the
outbound policy cannot pin: the hosts are checked before each delivery, and only administrators
choose apprise URLs (alerts/destinations.py explains the trade-off).

Apprise is an optional extra (requirements-apprise.txt): without it DockMon runs as usual, a
channel of this kind is refused at save time (400 on `url`) and one stored earlier fails for good.
"""

from __future__ import annotations

from alerts.transports.base import Message, Transport, TransportError

_TYPES = {"info": "info", "warning": "warning", "error": "failure", "critical": "failure"}
# Schemes whose host is the server apprise posts to, whatever it is: also resolved and checked.
_GENERIC_SCHEMES = {"json", "jsons", "xml", "xmls", "form", "forms"}
NOT_INSTALLED = "apprise is not installed (pip install -r requirements-apprise.txt)."


def _apprise():
    """The apprise module, or None when the optional extra is not installed."""
    try:
        import apprise
    except ImportError:
        return None
    return apprise


def endpoints(text: str) -> list[tuple[str, int, bool]]:
    """(host, port, generic) of every server the apprise URLs in `text` name (their `host`, and
    an email URL's SMTP server). For many services the "host" is a token (tgram://TOKEN/...)
    and the request goes to the service's fixed API: checking it without a lookup is harmless."""
    apprise = _apprise()
    if apprise is None:
        return []  # nothing can be sent: validate() and send() say why
    found = []
    for part in str(text).split():
        instance = apprise.Apprise()
        if not instance.add(part):
            continue
        server = instance[0]
        generic = part.split("://", 1)[0].lower() in _GENERIC_SCHEMES
        host = getattr(server, "host", None)
        if host:
            port = getattr(server, "port", None) or (443 if getattr(server, "secure", False) else 80)
            found.append((str(host), int(port), generic))
        smtp = str(getattr(server, "smtp_host", None) or "")
        if smtp:
            name, _, port_text = smtp.rpartition(":") if smtp.count(":") == 1 else (smtp, "", "")
            found.append((name, int(port_text) if port_text.isdigit() else int(getattr(server, "port", None) or 25), False))
    return found


def check(text: str, *, at_save: bool = False) -> None:
    """Raise the outbound policy's error for these apprise URLs (outbound.Refused, or
    ConnectionFailed for a name that does not resolve, except at save time). Generic webhook
    schemes are resolved and every address checked; other hosts are checked without a lookup."""
    from dockmon_site import outbound

    for host, port, generic in endpoints(text):
        try:
            outbound.check_host_port(host, port, resolve=generic)
        except outbound.Refused:
            raise
        except outbound.OutboundError:
            if not at_save:
                raise


def policy_error(text: str) -> str:
    """check() at save time, as a message ("" when nothing is refused)."""
    try:
        check(text, at_save=True)
    except ValueError as exc:
        return str(exc)
    return ""


class AppriseURL(Transport):
    kind = "apprise"
    required_fields = ("url",)
    secret_fields = ("url",)
    destination_fields = ("url",)

    @classmethod
    def all_fields(cls) -> tuple[str, ...]:
        return cls.required_fields

    @classmethod
    def validate(cls, config: dict) -> dict:
        errors = super().validate(config)
        apprise = _apprise()
        if apprise is None:
            errors["url"] = NOT_INSTALLED
        elif config.get("url"):
            instance = apprise.Apprise()
            if not all(instance.add(url) for url in str(config["url"]).split()):
                errors["url"] = "Apprise does not understand this URL."
        return errors

    def send(self, message: Message) -> None:
        apprise = _apprise()
        if apprise is None:
            raise TransportError(f"apprise: {NOT_INSTALLED}", permanent=True)
        # Permission: an administrator chose these URLs (alerts/destinations.py). Apprise opens
        # its own connections, so the policy is checked just before (see that module's note).
        from dockmon_site import outbound

        try:
            check(str(self.config["url"]))
        except outbound.OutboundError as exc:
            raise TransportError(self.scrub(f"apprise: {exc}"), permanent=isinstance(exc, outbound.Refused)) from exc

        asset = apprise.AppriseAsset(image_url_mask=None, image_url_logo=None)
        instance = apprise.Apprise(asset=asset)
        for url in str(self.config["url"]).split():
            if not instance.add(url):
                raise TransportError("apprise: the URL is not understood", permanent=True)
        notify_type = "success" if message.event == "resolved" else _TYPES.get(message.severity, "warning")
        body = message.body + (f"\n{message.link}" if message.link else "")
        with apprise.LogCapture(level=apprise.logging.WARNING) as logs:
            ok = instance.notify(title=message.title, body=body or message.title, notify_type=notify_type)
        if not ok:
            # Apprise logs the URLs it posted to (tokens in their paths): keep origins only.
            detail = self.scrub(" ".join(logs.getvalue().split()))[-300:]
            raise TransportError(f"apprise: delivery failed{': ' + detail if detail else ''}")
