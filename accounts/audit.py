"""The audit log: who did what to which object, when, and from where.

Everything goes through `record()`. Call it from any surface:

    from accounts import audit
    audit.record(request, "container.stop", obj=container, changes={"timeout": 10}, status=200)
    audit.record(user, "container.restart", obj=container)         # no request at hand (a task)
    audit.record(None, "container.auto_restart", obj=container)    # the system itself

Unsafe API calls are recorded by `AuditMiddleware` (one row per call, written after the
response so that it carries the status code). A `record()` made with the request while that
call is being served does not write a second row: it fills in the call's row (action, object,
changes), so an operation reached through the API appears once, with its outcome. Admin
changes are recorded from Django's LogEntry (see `accounts.signals`); admin POSTs that leave no
LogEntry (bulk deletes, custom actions) are recorded by the middleware.
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
import logging
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, transaction

logger = logging.getLogger(__name__)

REDACTED = "********"
# Any key containing one of these is a secret: its value never reaches the audit log.
SECRET_KEY_PARTS = ("password", "secret", "token", "tls_key", "private_key", "api_key", "apikey", "authorization", "webhook_url",
                    "api-key", "cookie")
# A key ending so holds a map of names to secret values (request headers): only the names are kept.
SECRET_MAP_SUFFIXES = ("headers",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
MAX_VALUE_LENGTH = 2000

_current_request: contextvars.ContextVar = contextvars.ContextVar("dockmon_audit_request", default=None)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def is_secret_key(key: str) -> bool:
    lowered = str(key).lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def is_secret_map_key(key: str) -> bool:
    """A map of names to secret values (a health check's request headers): names are kept."""
    return str(key).lower().endswith(SECRET_MAP_SUFFIXES)


def _redact_entry(key, value, depth: int) -> Any:
    if value in (None, ""):
        return value
    if is_secret_key(key):
        return REDACTED
    if is_secret_map_key(key):
        return {_clean_text(str(name)): REDACTED for name in value} if isinstance(value, dict) else REDACTED
    return redact(value, depth + 1)


def redact(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy of `value` with every secret-looking key's value replaced."""
    if _depth > 8:
        return "…"
    if isinstance(value, dict):
        return {_clean_text(str(k)): _redact_entry(k, v, _depth) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, _depth + 1) for v in value[:200]]
    if isinstance(value, str):
        value = _clean_text(value)
        return value if len(value) <= MAX_VALUE_LENGTH else value[:MAX_VALUE_LENGTH] + "…"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    # Dates, UUIDs, decimals, model instances: through Django's encoder, else their text.
    try:
        return json.loads(json.dumps(value, cls=DjangoJSONEncoder))
    except TypeError:
        return str(value)


def _clean_text(value: str) -> str:
    # PostgreSQL stores no NUL character in text or JSON; the record must still be written.
    return value.replace("\x00", "\ufffd")


def client_ip(request) -> str | None:
    """The caller's address. X-Forwarded-For is believed only when settings say a proxy sets it."""
    meta = getattr(request, "META", None) or {}
    candidate = meta.get("REMOTE_ADDR", "")
    if getattr(settings, "DOCKMON_TRUST_X_FORWARDED_FOR", False):
        forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            # The proxy appends the address it saw: the last entry is the one it vouches for.
            candidate = forwarded.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def source_for_path(path: str) -> str:
    from accounts.choices import AuditSource

    if path.startswith("/api/"):
        return AuditSource.API
    if path.startswith("/admin/"):
        return AuditSource.ADMIN
    return AuditSource.UI


def current_request():
    """The HTTP request being served on this thread/task, if any (set by AuditMiddleware)."""
    return _current_request.get()


def _describe(obj) -> tuple[str, str, str]:
    meta = getattr(obj, "_meta", None)
    if meta is None:
        return "", "", str(obj)[:255] if obj is not None else ""
    return f"{meta.app_label}.{meta.model_name}", str(obj.pk), str(obj)[:255]


def _is_request(value) -> bool:
    return hasattr(value, "META") and hasattr(value, "method")


def _user_of(value):
    user = getattr(value, "user", None) if _is_request(value) else value
    if user is not None and getattr(user, "is_authenticated", False):
        return user
    return None


def _token_id_of(request) -> int | None:
    from accounts.models import APIToken

    token = getattr(request, "auth", None)
    return token.pk if isinstance(token, APIToken) else None


def _raw_request(request):
    # A DRF Request wraps Django's; the pending-row bookkeeping lives on Django's.
    return getattr(request, "_request", request)


# ---------------------------------------------------------------------------
# The one entry point
# ---------------------------------------------------------------------------
def record(
    request_or_user,
    action: str,
    obj=None,
    changes: dict | None = None,
    status: int | None = None,
    *,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    source: str | None = None,
):
    """Record one audited action. Never raises: an audit failure must not undo the action.

    `request_or_user` is a Django/DRF request, a user, or None for the system. Returns the
    AuditEntry written, or None when the action was folded into the API call's own row (it
    is written when the response leaves) or could not be written.
    """
    described_type, described_id, described_repr = _describe(obj) if obj is not None else ("", "", "")
    fields = {
        "action": action[:100],
        "object_type": (object_type or described_type)[:100],
        "object_id": str(object_id or described_id)[:255],
        "object_repr": (object_repr or described_repr)[:255],
    }
    if changes is not None:
        fields["changes"] = redact(changes)
    if status is not None:
        fields["status_code"] = status

    request = request_or_user if _is_request(request_or_user) else None
    if request is None and request_or_user is not None:
        # Called with just the user (e.g. from a service function) while that user's HTTP
        # request is being served: it is that request's action, with its address and path.
        current = current_request()
        if current is not None and _user_of(current) == request_or_user:
            request = current
    if request is not None:
        pending = getattr(_raw_request(request), "_dockmon_audit", None)
        if pending is not None and pending.get("fold") and not pending.get("folded"):
            pending["folded"] = True
            pending["note"].update(fields)
            return None
    return _write(request, _user_of(request_or_user), fields, source)


def _write(request, user, fields: dict, source: str | None):
    from accounts.choices import AuditSource
    from accounts.models import AuditEntry

    fields = {k: _clean_text(v) if isinstance(v, str) else v for k, v in fields.items()}
    entry = AuditEntry(user=user, username=getattr(user, "username", "") or "", **fields)
    if request is not None:
        raw = _raw_request(request)
        entry.ip = client_ip(raw)
        entry.method = (raw.method or "")[:10]
        entry.path = _clean_text(raw.get_full_path() if hasattr(raw, "get_full_path") else "")[:500]
        entry.token_id = _token_id_of(raw)
        entry.source = source or source_for_path(raw.path)
        pending = getattr(raw, "_dockmon_audit", None)
        if pending is not None:
            pending["written"] = pending.get("written", 0) + 1
    else:
        entry.source = source or AuditSource.SYSTEM
    try:
        # A savepoint, so that a failed audit write cannot poison the caller's transaction.
        with transaction.atomic():
            entry.save()
    except DatabaseError:
        logger.exception("could not write audit entry %s", fields.get("action"))
        return None
    return entry


# ---------------------------------------------------------------------------
# Middleware
# ---------------------------------------------------------------------------
def _request_body(request) -> Any:
    content_type = request.META.get("CONTENT_TYPE", "")
    try:
        if content_type.startswith("application/json"):
            body = request.body
            parsed = json.loads(body) if body else {}
            return {} if parsed is None else parsed  # a JSON null body: the row's changes cannot be null
        if request.method == "POST":
            # Read (and keep) the raw body before parsing the form: a form Django refuses to parse
            # here (too many fields) must leave the body to the view, which answers 400; parsing
            # straight from the stream would consume it and the view would fail with a 500.
            request.body  # noqa: B018
            return {k: v if len(values) == 1 else values for k, values in request.POST.lists() for v in values[:1]}
    except Exception:  # an unreadable body is the view's problem to report, not the audit log's
        return {}
    return {}


def _api_action(request) -> tuple[str, str, str]:
    """(action, object_type, object_id) derived from the URL route of an API call."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return f"api.{request.method.lower()}", "", ""
    func = match.func
    cls = getattr(func, "cls", None)
    actions = getattr(func, "actions", None) or {}
    basename = (getattr(func, "initkwargs", None) or {}).get("basename")
    verb = actions.get(request.method.lower())
    if basename and verb:
        action = f"{basename}.{verb}"
    else:
        action = (match.url_name or "api").replace("-", ".") + ("" if basename else f".{request.method.lower()}")
    object_type = ""
    queryset = getattr(cls, "queryset", None)
    if queryset is not None:
        object_type = f"{queryset.model._meta.app_label}.{queryset.model._meta.model_name}"
    lookup = next((str(v) for k, v in match.kwargs.items() if k in ("pk", "key", "id") or k.endswith("_pk")), "")
    return action, object_type, lookup


class AuditMiddleware:
    """Records every unsafe API call (one row, after the response) and admin/UI changes that
    leave no other audit row; makes the current request known to `record()` callers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _current_request.set(request)
        unsafe = request.method not in SAFE_METHODS
        source = source_for_path(request.path)
        if unsafe:
            body = redact(_request_body(request))
            request._dockmon_audit = {"note": {}, "written": 0, "fold": source == "api", "body": body}
        try:
            response = self.get_response(request)
        finally:
            _current_request.reset(token)
        if unsafe:
            self._finish(request, response, source)
        return response

    def _finish(self, request, response, source: str) -> None:
        pending = request._dockmon_audit
        if source == "api":
            action, object_type, object_id = _api_action(request)
            note = pending["note"]
            fields = {
                "action": note.get("action") or action,
                "object_type": note.get("object_type") or object_type,
                "object_id": note.get("object_id") or object_id,
                "object_repr": note.get("object_repr", ""),
                "changes": note["changes"] if "changes" in note else pending["body"],
                "status_code": response.status_code,
            }
            _write(request, _user_of(request), fields, source)
        elif pending["written"] == 0:
            body = pending["body"] if isinstance(pending["body"], dict) else {}
            body.pop("csrfmiddlewaretoken", None)
            fields = {
                "action": f"{source}.{body.get('action') or 'post'}"[:100],
                "changes": body,
                "status_code": response.status_code,
            }
            # Only successful, state-changing admin requests: a re-shown form with errors changed nothing.
            if response.status_code in (301, 302, 303) or (source != "admin" and response.status_code < 400):
                if request.path.rstrip("/").endswith(("/login", "/logout")):
                    return  # logins are recorded by the auth signals
                _write(request, _user_of(request), fields, source)


def note(request, *, obj=None, action: str | None = None, changes: dict | None = None) -> None:
    """Tell the API call's row which object it touched (without writing a row)."""
    pending = getattr(_raw_request(request), "_dockmon_audit", None)
    if pending is None:
        return
    target = pending["note"]
    if obj is not None and not target.get("object_id"):
        target["object_type"], target["object_id"], target["object_repr"] = _describe(obj)
    if action and not target.get("action"):
        target["action"] = action
    if changes is not None:
        target["changes"] = redact(changes)
