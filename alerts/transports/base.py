"""The Transport base class, its error, and the one HTTP helper every HTTP transport uses."""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings

# What DockMon reads of a service's answer (the status and a short error text are all it uses).
RESPONSE_MAX_BYTES = 64 * 1024
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
    # The settings that say where the secrets go. Changing one of them drops every stored
    # secret the same change does not supply again (NotificationChannel.save()).
    destination_fields: tuple[str, ...] = ("base_url",)
    # Settings that may hold a full URL requests go to (a webhook URL, an ntfy topic URL).
    url_fields: tuple[str, ...] = ()

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

    @classmethod
    def destination(cls, config: dict) -> dict:
        """Where this channel's secrets go (its destination settings, as text): when it changes,
        stored secrets not given again are dropped (NotificationChannel.save())."""
        return {name: str(config[name]) for name in cls.destination_fields if config.get(name) not in (None, "")}

    @classmethod
    def user_urls(cls, config: dict) -> dict[str, str]:
        """The URLs a person set in these settings that requests will go to (field → URL), for
        the outbound policy at save time (alerts/destinations.py)."""
        urls = {name: str(config[name]) for name in ("base_url", *cls.url_fields)
                if str(config.get(name) or "").lower().startswith(("http://", "https://"))}
        if config.get("base_url") and "base_url" not in urls:
            urls["base_url"] = str(config["base_url"])
        return urls

    # ---- HTTP ------------------------------------------------------------------------------
    def post(self, url: str, *, json=None, data=None, headers: dict | None = None, params: dict | None = None):
        """POST through the outbound policy (dockmon_site/outbound.py: never an engine's address,
        ports 2375/2376, link-local or metadata; the admin deny/allow lists; the address checked
        is the one connected to; no redirects; a capped body and a total deadline), and turn every
        failure into a TransportError with the right retry/disable kind.

        Permission: a notification goes where an administrator pointed the channel (changing a
        channel's destination needs one, alerts/destinations.py); DockMon chooses the method."""
        from dockmon_site import outbound

        try:
            response = outbound.request(
                "POST", url, json=json, data=data, headers=headers, params=params, timeout=settings.DOCKMON_NOTIFY_TIMEOUT,
                max_bytes=RESPONSE_MAX_BYTES, follow_redirects=False,
            )
        except outbound.Refused as exc:
            # The destination is off limits now (an engine registered there since, a deny rule):
            # retrying cannot help, so the channel is disabled with the reason.
            raise TransportError(self.scrub(f"{self.kind}: {exc}"), permanent=True) from exc
        except outbound.Timeout as exc:
            # Never the exception's text from requests: it names the full URL (Telegram's bot
            # token, a Discord or Slack webhook path, a token in the query).
            raise TransportError(f"{self.kind}: timed out talking to {origin(url)} ({exc.__class__.__name__})") from exc
        except outbound.OutboundError as exc:
            reason = f"{exc.__class__.__name__}: {' '.join(str(exc).split())}".rstrip(".")
            raise TransportError(self.scrub(f"{self.kind}: cannot connect to {origin(url)} ({reason})")) from exc
        try:
            raise_for_response(self.kind, response)
        except TransportError as exc:
            # A service may echo the request path or the token in its error body.
            exc.args = (self.scrub(str(exc)),)
            raise
        return response

    # ---- keeping secrets out of errors -----------------------------------------------------
    def secret_values(self) -> list[str]:
        return secret_values(self.config, self.secret_fields)

    def scrub(self, text: str) -> str:
        """`text` with URLs cut to their origin and every secret setting replaced by ***."""
        return scrub(text, self.secret_values())


# Errors end up in last_error, disabled_reason, the delivery log, events and API answers: they
# carry the origin of a URL (scheme, host, port) and the exception class, never a path, query,
# user info or a secret setting.
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]{1,15})://([^\s'\"<>()\[\]{}]*)")
_URL_PATH = re.compile(r"(with url: |url: )\S+")
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\],]+")
REDACTED = "***"


def origin(url: str) -> str:
    """scheme://host:port of a URL (no user info, path or query)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the configured URL"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}" if parts.scheme and host else "the configured URL"


def strip_urls(text: str) -> str:
    def cut(match: re.Match) -> str:
        scheme = match.group(1).lower()
        if scheme in ("http", "https", "ws", "wss"):
            netloc = re.split(r"[/?#]", match.group(2), maxsplit=1)[0].rpartition("@")[2]
            return f"{scheme}://{netloc}"
        # Apprise-style URLs (tgram://TOKEN/CHAT...) hold their secrets in the "host" too.
        return f"{scheme}://{REDACTED}"

    return _URL_PATH.sub(lambda m: m.group(1) + REDACTED, _URL.sub(cut, text))


def connection_reason(exc: BaseException) -> str:
    """The exception class and the operating system's reason ("[Errno 111] Connection refused")."""
    reason = _ERRNO.search(str(exc))
    name = exc.__class__.__name__
    return f"{name}: {reason.group(0).strip()}" if reason else name


def secret_values(config: dict, fields) -> list[str]:
    """Every string that gives a secret away: the secret settings themselves, header values, and
    the parts of secret URLs (user info, host of a non-HTTP URL, path segments, query values)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    values: set[str] = set()
    for name in fields:
        value = config.get(name)
        items = list(value.values()) if isinstance(value, dict) else [value]
        for item in items:
            if not isinstance(item, str) or not item:
                continue
            values.add(item)
            for part in item.split():
                values.add(part)
                try:
                    url = urlsplit(part)
                except ValueError:
                    continue
                if url.scheme:
                    if url.username:
                        values.add(unquote(url.username))
                    if url.password:
                        values.add(unquote(url.password))
                    if url.scheme.lower() not in ("http", "https") and url.netloc:
                        values.add(url.netloc.rpartition("@")[2])
                path = url.path if url.scheme else part.split("?", 1)[0]
                if path.strip("/"):
                    values.add(path)
                    # Segments that look like ids or tokens (digits, or long), not words like "api".
                    values.update(seg for seg in path.split("/") if any(c.isdigit() for c in seg) or len(seg) >= 16)
                if url.query:
                    values.add(url.query)
                    values.update(v for _, v in parse_qsl(url.query))
    # Very short strings ("1", "api") would blank out ordinary words of the message.
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def scrub(text: str, secrets=()) -> str:
    text = strip_urls(str(text))
    for value in secrets:
        text = text.replace(value, REDACTED)
    return text


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


def raise_for_response(kind: str, response) -> None:
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
