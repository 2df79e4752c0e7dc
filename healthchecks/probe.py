"""The health probe: runs one HTTP check through the outbound policy (dockmon_site/outbound.py).

Everything about reaching the target - which addresses and ports are refused (metadata,
link-local, registered Docker engines, 2375/2376, the administrator's deny/allow lists), the
pinned connection to the checked address, redirects followed and checked hop by hop, the total
deadline and the body cap, no proxies from the environment - is the outbound module's. This
module adds what a health check means: the expected status, the body keyword, and the method
rule (a check sending other than GET/HEAD runs only while an administrator stands behind it).

probe(spec) never raises: it returns a ProbeResult with `ok` and a readable `error`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from dockmon_site import crypto, outbound
from dockmon_site.outbound import BLOCKED_NAMES, BLOCKED_NETWORKS, blocked_reason  # noqa: F401 - kept importable from here

MAX_REDIRECTS = outbound.MAX_REDIRECTS
DEFAULT_BODY_LIMIT = 64 * 1024
USER_AGENT = "DockMon-HealthCheck/1.0"


# ---------------------------------------------------------------------------
# Expected status: "200-299,301"
# ---------------------------------------------------------------------------
_PART = re.compile(r"^(\d{3})(?:-(\d{3}))?$")


def parse_status_spec(text: str) -> tuple[tuple[int, int], ...]:
    """Parse a status spec strictly; raises ValueError with a message fit for the user."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("Give at least one status code, e.g. 200 or 200-299,301.")
    ranges = []
    for raw in text.split(","):
        part = raw.strip()
        match = _PART.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a status code or a range like 200-299.")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        for code in (low, high):
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599).")
        if low > high:
            raise ValueError(f"The range {part} runs backwards.")
        ranges.append((low, high))
    return tuple(ranges)


def status_matches(code: int | None, ranges: tuple[tuple[int, int], ...]) -> bool:
    return code is not None and any(low <= code <= high for low, high in ranges)


def validate_url(url: str, *, method: str = "GET", admin: bool = False) -> str:
    """Save-time check of a check's URL (outbound.validate_url); ValueError with a clear message."""
    return outbound.validate_url(url, method=method, admin=admin)


@dataclass
class ProbeSpec:
    url: str
    method: str = "GET"
    expected_status: str = "200-399"
    body_keyword: str = ""
    headers: dict = field(default_factory=dict)
    basic_auth_user: str = ""
    basic_auth_password: str = ""
    timeout: float = 10.0
    follow_redirects: bool = True
    verify_tls: bool = True
    tls_ca: str = ""
    body_limit: int = DEFAULT_BODY_LIMIT
    # Who chose the method: None = not a user's choice (tools, tests); False = a user who is not
    # an administrator (only GET/HEAD go out); True = an administrator approved it.
    admin: bool | None = None
    # Set when a stored secret (headers, password) no encryption key opens: the check fails with it.
    secrets_error: str = ""

    @classmethod
    def for_check(cls, check, body_limit: int = DEFAULT_BODY_LIMIT) -> ProbeSpec:
        return cls(
            secrets_error=_secrets_error(check),
            url=check.url,
            method=check.method,
            expected_status=check.expected_status,
            body_keyword=check.body_keyword,
            headers=check.header_dict,
            basic_auth_user=check.basic_auth_user,
            basic_auth_password=check.basic_auth_password or "",
            timeout=float(check.timeout_seconds),
            follow_redirects=check.follow_redirects,
            verify_tls=check.verify_tls,
            tls_ca=check.tls_ca,
            body_limit=body_limit,
            admin=method_approved(check),
        )


def _secrets_error(check) -> str:
    broken = [name for name, value in (("header values", check.headers), ("basic-auth password", check.basic_auth_password))
              if crypto.is_undecryptable(value)]
    if not broken:
        return ""
    return "Invalid check: " + crypto.undecryptable_message(f"the stored {' and '.join(broken)}", plural=True)


def method_approved(check) -> bool | None:
    """None for GET/HEAD; for any other method, whether an administrator approved it (the one
    who last set the method, URL or headers) and still is one."""
    if str(check.method).upper() in outbound.SAFE_METHODS:
        return None
    from accounts.roles import is_administrator

    approver = check.method_approved_by if check.method_approved_by_id else None
    return bool(approver is not None and is_administrator(approver))


@dataclass
class ProbeResult:
    ok: bool
    status_code: int | None = None
    response_ms: int | None = None
    error: str = ""
    url: str = ""
    redirects: int = 0
    addresses: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "status_code": self.status_code, "response_ms": self.response_ms, "error": self.error,
                "url": self.url, "redirects": self.redirects}


def probe(spec: ProbeSpec) -> ProbeResult:
    """Run one HTTP check against spec.url; never raises."""
    started = time.monotonic()
    if spec.secrets_error:
        return ProbeResult(ok=False, error=spec.secrets_error, url=spec.url, response_ms=0)
    try:
        ranges = parse_status_spec(spec.expected_status)
        outbound.validate_url(spec.url)
    except ValueError as exc:
        return ProbeResult(ok=False, error=f"Invalid check: {exc}", url=spec.url, response_ms=0)
    result = ProbeResult(ok=False, url=spec.url)
    auth = (spec.basic_auth_user, spec.basic_auth_password) if spec.basic_auth_user else None
    verify = spec.verify_tls
    try:
        response = outbound.request(
            spec.method, spec.url, timeout=spec.timeout, max_bytes=spec.body_limit, headers=spec.headers, auth=auth,
            verify=verify, ca_pem=spec.tls_ca if verify else "", follow_redirects=spec.follow_redirects,
            max_redirects=MAX_REDIRECTS, admin=spec.admin, user_agent=USER_AGENT,
        )
    except outbound.OutboundError as exc:
        result.error = str(exc)
        result.status_code = exc.status_code
        result.url = exc.url or spec.url
        result.redirects = exc.redirects
        result.addresses = exc.addresses
    except Exception as exc:  # a bug here must still be a result, never a crash
        result.error = f"Request failed: {exc.__class__.__name__}"
    else:
        result.status_code = response.status_code
        result.url, result.redirects, result.addresses = response.url, response.redirects, response.addresses
        if not status_matches(response.status_code, ranges):
            result.error = f"Status {response.status_code} is not one of {spec.expected_status}."
        elif spec.body_keyword and spec.body_keyword.encode() not in response.content:
            result.error = f"{spec.body_keyword!r} was not found in the response body (first {spec.body_limit // 1024} KiB)."
        else:
            result.ok = True
    result.response_ms = int((time.monotonic() - started) * 1000)
    return result


def public_error(error: str) -> str:
    """The part of a probe error a non-administrator may read: what kind of failure, never a
    detail a server sent or that could describe a response body."""
    if not error:
        return ""
    if error.startswith("Refused redirect"):
        return "Refused a redirect to a target DockMon may not reach."  # the target came from the server
    if error.endswith(" KiB).") and " was not found in the response body" in error:
        return error  # the keyword is the user's own; found or not is what a check tells
    for prefix, text in _PUBLIC_ERRORS:
        if error.startswith(prefix):
            return text or error
    return "The check failed."


# (prefix, what a non-administrator sees; "" = the message itself, written by DockMon whole)
_PUBLIC_ERRORS = (
    ("Refused", ""),
    ("Invalid check", ""),
    ("Only an administrator", ""),
    ("Timed out", ""),
    ("Connection refused.", ""),
    ("More than", ""),
    ("Status ", ""),
    ("TLS error", "TLS error."),
    ("Connection failed", "Connection failed."),
    ("Request failed", "Request failed."),
)
