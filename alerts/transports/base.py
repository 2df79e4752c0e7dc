"""The Transport base class, its error, and the one HTTP helper every HTTP transport uses."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from django.conf import settings

SEVERITY_COLORS = {"info": 0x3B82F6, "warning": 0xF59E0B, "error": 0xEF4444, "critical": 0x991B1B}


@dataclass
class Message:
    title: str
    body: str
    severity: str = "warning"
    event: str = "fired"  # fired | resolved | test
    link: str = ""
    alert: dict = field(default_factory=dict)

    @property
    def color(self) -> int:
        return 0x22C55E if self.event == "resolved" else SEVERITY_COLORS.get(self.severity, 0xF59E0B)


class TransportError(Exception):
    """A failed delivery. `permanent`: the channel's settings are wrong (bad token, unknown
    chat): retrying cannot help, so the channel is disabled with this message as the reason.
    `retry`: worth trying again (5xx, 429, network); `retry_after`: seconds the service asked for."""

    def __init__(self, message: str, *, permanent: bool = False, retry: bool = True, retry_after: float | None = None,
                 status_code: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry = retry and not permanent
        self.retry_after = retry_after
        self.status_code = status_code


class Transport:
    kind = ""
    # Settings the API accepts; `secret_fields` are stored encrypted and never returned.
    required_fields: tuple[str, ...] = ()
    optional_fields: tuple[str, ...] = ()
    secret_fields: tuple[str, ...] = ()
    # Name of the setting holding the service's default base URL (self-hosted servers and test
    # receivers override it per channel with config["base_url"]).
    base_url_setting = ""

    def __init__(self, config: dict):
        self.config = config

    @classmethod
    def all_fields(cls) -> tuple[str, ...]:
        return (*cls.required_fields, *cls.optional_fields, "base_url")

    @classmethod
    def validate(cls, config: dict) -> dict:
        """Field errors for a channel's merged settings ({} when valid)."""
        errors = {}
        for name in cls.required_fields:
            if config.get(name) in (None, "", []):
                errors[name] = "This setting is required."
        unknown = sorted(set(config) - set(cls.all_fields()))
        if unknown:
            errors["unknown"] = f"Unknown settings for {cls.kind}: {', '.join(unknown)}."
        base = config.get("base_url")
        if base and not str(base).startswith(("http://", "https://")):
            errors["base_url"] = "Use an http:// or https:// URL."
        return errors

    @property
    def base_url(self) -> str:
        base = self.config.get("base_url") or (getattr(settings, self.base_url_setting, "") if self.base_url_setting else "")
        if not base:
            raise TransportError(f"{self.kind}: no base URL configured", permanent=True)
        return base.rstrip("/") + "/"

    def url(self, path_or_url: str) -> str:
        """A full URL as given, or a path under the base URL."""
        if path_or_url.startswith(("http://", "https://")) and not self.config.get("base_url"):
            return path_or_url
        if path_or_url.startswith(("http://", "https://")):
            # A per-channel base URL replaces the origin of a full webhook URL (local receivers,
            # proxies), keeping its path.
            from urllib.parse import urlsplit

            parts = urlsplit(path_or_url)
            path_or_url = parts.path + (f"?{parts.query}" if parts.query else "")
        # Plain concatenation: urljoin would read "bot123:abc/..." as a URL scheme.
        return self.base_url + path_or_url.lstrip("/")

    def send(self, message: Message) -> None:
        raise NotImplementedError

    # ---- HTTP ------------------------------------------------------------------------------
    def post(self, url: str, *, json=None, data=None, headers: dict | None = None, params: dict | None = None) -> requests.Response:
        """POST and turn every failure into a TransportError with the right retry/disable kind."""
        try:
            response = requests.post(
                url, json=json, data=data, headers=headers, params=params, timeout=settings.DOCKMON_NOTIFY_TIMEOUT,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise TransportError(f"{self.kind}: timed out ({exc.__class__.__name__})") from exc
        except requests.RequestException as exc:
            raise TransportError(f"{self.kind}: cannot connect: {exc}") from exc
        raise_for_response(self.kind, response)
        return response


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def raise_for_response(kind: str, response: requests.Response) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    detail = (response.text or "").strip().replace("\n", " ")[:300]
    text = f"{kind}: HTTP {code}" + (f": {detail}" if detail else "")
    if code == 429:
        raise TransportError(text, retry_after=parse_retry_after(response.headers.get("Retry-After")), status_code=code)
    if code in (401, 403):
        raise TransportError(f"{text} (the token or credentials were refused)", permanent=True, status_code=code)
    if code in (404, 410):
        raise TransportError(f"{text} (the webhook, chat or topic does not exist)", permanent=True, status_code=code)
    if 300 <= code < 400:
        raise TransportError(f"{text} (redirects are not followed; check the URL)", permanent=True, status_code=code)
    if code >= 500 or code == 408:
        raise TransportError(text, status_code=code)
    # Other 4xx: this message was refused; another may pass, so the channel stays on.
    raise TransportError(text, retry=False, status_code=code)


def monotonic_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
