"""Notification texts: Django templates with a small set of variables, a default per kind, and
a per-rule override.

Variables: kind, rule, severity, event (fired|resolved), container, container_key, host, state,
previous_state, exit_code, health, value, threshold, unit, current_version, latest_version, image,
error, occurrences, hits (events within the rule's window), restarts (restart_loop: the automatic
restarts made before auto-restart gave up), link, message.
"""

from __future__ import annotations

from django.conf import settings

from alerts import template_sandbox

VARIABLES = (
    "kind", "rule", "severity", "event", "container", "container_key", "host", "state", "previous_state", "exit_code",
    "health", "value", "threshold", "unit", "current_version", "latest_version", "image", "error", "occurrences",
    "hits", "restarts", "link", "message",
)

DEFAULTS: dict[str, tuple[str, str]] = {
    "container_stopped": ("{{ container }} stopped on {{ host }}",
                          "{{ container }} on {{ host }} is {{ state }}{% if exit_code is not None %} (exit code {{ exit_code }}){% endif %}."),
    "container_started": ("{{ container }} started on {{ host }}", "{{ container }} on {{ host }} is running."),
    "container_restarted": ("{{ container }} restarted on {{ host }}",
                            "{{ container }} on {{ host }} exited{% if exit_code is not None %} with code {{ exit_code }}{% endif %} and is running again."),
    "restart_loop": ("{{ container }} is in a restart loop on {{ host }}",
                     "{{ container }} on {{ host }} keeps failing: {% if restarts %}auto-restart gave up after {{ restarts }} "
                     "restart{{ restarts|pluralize }}{% else %}it restarted {{ hits|default:occurrences }} times{% endif %}."
                     "{% if error %} Last failure: {{ error }}.{% endif %}"),
    "container_unhealthy": ("{{ container }} is unhealthy on {{ host }}", "Docker reports {{ container }} on {{ host }} as {{ health }}."),
    "health_check_failed": ("Health check of {{ container }} failed", "The HTTP health check of {{ container }} on {{ host }} fails: {{ error }}"),
    "cpu_high": ("{{ container }}: CPU {{ value }}%", "{{ container }} on {{ host }} uses {{ value }}% CPU (threshold {{ threshold }}%)."),
    "memory_high": ("{{ container }}: memory {{ value }}{{ unit }}",
                    "{{ container }} on {{ host }} uses {{ value }}{{ unit }} of memory (threshold {{ threshold }}{{ unit }})."),
    "host_offline": ("Host {{ host }} is offline", "DockMon cannot reach {{ host }}{% if error %}: {{ error }}{% endif %}."),
    "disk_high": ("Host {{ host }}: Docker disk use {{ value }}{{ unit }}",
                  "Docker on {{ host }} uses {{ value }}{{ unit }} of disk (threshold {{ threshold }}{{ unit }})."),
    "update_available": ("Update available for {{ container }}",
                         "{{ image }}: {{ current_version }} → {{ latest_version }} ({{ container }} on {{ host }})."),
    "update_succeeded": ("{{ container }} was updated", "{{ container }} on {{ host }} now runs {{ latest_version|default:image }}."),
    "update_failed": ("Update of {{ container }} failed", "The update of {{ container }} on {{ host }} failed{% if error %}: {{ error }}{% endif %}."),
}
RESOLVED_TITLE = "Resolved: {{ title }}"
RESOLVED_BODY = "{{ message }}\nResolved after {{ occurrences }} occurrence{{ occurrences|pluralize }}."


# The resolved message's templates also see the fired title.
_RESOLVED_NAMES = (*VARIABLES, "title")


def check(source: str) -> str:
    """Raise ValueError when a template does not parse or leaves the sandbox (alerts/template_sandbox.py:
    allowlisted tags and filters, documented variables only, no attributes, bounded work)."""
    try:
        template_sandbox.compile_checked(source, VARIABLES)
    except ValueError as exc:
        raise ValueError(f"template error: {exc}") from None
    return source


def validate_template(source: str) -> None:
    """Model field validator (the admin and every ModelForm): Django's ValidationError."""
    from django.core.exceptions import ValidationError

    try:
        check(source or "")
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def render(source: str, context: dict, names=VARIABLES) -> str:
    try:
        return template_sandbox.render(source, context, names).strip()
    except Exception as exc:  # a broken or refused override must not stop the notification
        return f"[template error: {exc}] {str(context.get('message', ''))[:template_sandbox.MAX_OUTPUT]}".strip()


def texts(kind: str, context: dict, *, title_template: str = "", body_template: str = "") -> tuple[str, str]:
    default_title, default_body = DEFAULTS.get(kind, ("{{ kind }}", "{{ message }}"))
    title = render(title_template or default_title, context)
    body = render(body_template or default_body, context)
    return title, body


def resolved_texts(context: dict, title: str, message: str) -> tuple[str, str]:
    data = {**context, "title": title, "message": message}
    return render(RESOLVED_TITLE, data, _RESOLVED_NAMES), render(RESOLVED_BODY, data, _RESOLVED_NAMES)


# Names that say nothing about where people reach DockMon.
_NOT_PUBLIC = {"testserver"}
_LOOPBACK = {"localhost", "127.0.0.1", "[::1]", "::1"}


def derived_base_url() -> str:
    """Where DockMon is served when DOCKMON_PUBLIC_URL is not set: the first concrete name in
    ALLOWED_HOSTS (a non-loopback one first: that is the name a deployment is reached by) and
    the port daphne listens on (PORT, default 8000, as `make run` does). "" when ALLOWED_HOSTS
    holds only wildcards: links then stay relative."""
    import os

    names = [h for h in settings.ALLOWED_HOSTS if h and "*" not in h and not h.startswith(".") and h not in _NOT_PUBLIC]
    if not names:
        return ""
    public = [h for h in names if h.lower() not in _LOOPBACK]
    host = (public or names)[0]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    secure = bool(getattr(settings, "SECURE_SSL_REDIRECT", False) or getattr(settings, "SESSION_COOKIE_SECURE", False))
    scheme = "https" if secure else "http"
    port = (os.environ.get("PORT") or "8000").strip()
    return f"{scheme}://{host}" + ("" if port == ("443" if secure else "80") else f":{port}")


def base_url() -> str:
    """The absolute base of links in notifications: DOCKMON_PUBLIC_URL, else derived_base_url()."""
    return (settings.DOCKMON_PUBLIC_URL or "").strip().rstrip("/") or derived_base_url()


def link(path: str) -> str:
    base = base_url()
    return f"{base}{path}" if base else path
