"""Apprise: one URL (or several, space-separated) for the long tail of services.

Apprise only sends what it is given: no configuration or plugin is fetched at run time (no
AppriseConfig, no remote attachments). It does not report why a delivery failed, so failures
are retried and never disable the channel on their own.
"""

from __future__ import annotations

from alerts.transports.base import Message, Transport, TransportError

_TYPES = {"info": "info", "warning": "warning", "error": "failure", "critical": "failure"}


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
        if config.get("url"):
            import apprise

            instance = apprise.Apprise()
            if not all(instance.add(url) for url in str(config["url"]).split()):
                errors["url"] = "Apprise does not understand this URL."
        return errors

    def send(self, message: Message) -> None:
        import apprise

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
