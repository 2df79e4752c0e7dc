"""The Content-Security-Policy (dockmon_site/csp.py): sent on every response, strict (scripts and
styles from DockMon's own origin only), and every page of the UI, the admin and the API docs runs
under it in Chromium without a single violation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from containers.models import Container
from containers.tests.browser import LOOP, SCREENSHOTS, browser, live, login  # noqa: F401 (browser: a fixture)
from dockmon_site import csp

ROOT = Path(__file__).resolve().parents[2]


def _directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


# guardian's object-permission page: its empty <style> block, allowed by hash (containers/admin_base.py).
EMPTY_STYLE_BLOCK = "'sha256-AbpHGcgLb+kRsJGnwFEktk7uzpZOCcBY74+YBdrKVGs='"


def _assert_strict(header: str, url: str, style_extra: tuple[str, ...] = ()):
    policy = _directives(header)
    assert policy["script-src"] == ["'self'"], url
    assert policy["default-src"] == ["'self'"] and policy["connect-src"] == ["'self'"], url
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], url
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"], url
    assert policy["img-src"] == ["'self'", "data:"], url
    assert policy["style-src"] == ["'self'", *style_extra], url
    assert "unsafe-" not in header.replace("style-src 'self' 'unsafe-inline'", ""), url


# --- without a browser --------------------------------------------------------------------------

def test_policy_header_is_built_from_the_one_constant_and_relaxes_per_response_only():
    assert csp.header_value() == ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                                  "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
    relaxed = csp.header_value({"style-src": ("'unsafe-inline'",)})
    assert _directives(relaxed)["style-src"] == ["'self'", "'unsafe-inline'"]
    assert csp.POLICY["style-src"] == ("'self'",)  # the constant itself is untouched


@pytest.mark.django_db
def test_every_kind_of_response_carries_the_policy(admin, django_user_model):
    from containers.models import DockerHost

    host = DockerHost.objects.create(name="csp-host", url="unix:///nonexistent.sock")
    """GIVEN an anonymous visitor, a superuser and a user without grants
    WHEN they get pages, redirects, JSON, API errors, admin pages and 404s
    THEN each response has the strict header; guardian's object-permission page alone allows one
    more style block, by its hash."""
    anonymous = Client()
    for path in ("/login/", "/", "/healthz", "/api/v1/containers/", "/no-such-page/"):
        response = anonymous.get(path)
        _assert_strict(response["Content-Security-Policy"], path)
    boss = Client()
    boss.force_login(admin)
    for path in ("/", "/containers/", "/hosts/", "/events/", "/health/", "/updates/", "/alerts/", "/alerts/channels/", "/password/", "/stacks/",
                 "/dashboard.json", "/api/v1/containers/", "/admin/", "/admin/containers/dockerhost/", "/api/v1/schema/",
                 "/containers/0:nope/"):
        response = boss.get(path)
        assert response.status_code in (200, 404), (path, response.status_code)
        _assert_strict(response["Content-Security-Policy"], path)
    # DRF's browsable API (HTML for a browser) alone allows inline styles; its JSON is strict.
    browsable = boss.get("/api/v1/hosts/", HTTP_ACCEPT="text/html")
    assert browsable.status_code == 200 and browsable["Content-Type"].startswith("text/html")
    _assert_strict(browsable["Content-Security-Policy"], "browsable API", style_extra=("'unsafe-inline'",))
    _assert_strict(boss.get("/api/v1/hosts/", HTTP_ACCEPT="application/json")["Content-Security-Policy"], "JSON")
    grants = boss.get(f"/admin/containers/dockerhost/{host.pk}/permissions/")
    assert grants.status_code == 200
    _assert_strict(grants["Content-Security-Policy"], "permissions", style_extra=(EMPTY_STYLE_BLOCK,))
    docs = boss.get("/api/v1/docs/")
    assert docs.status_code == 200 and "<style" not in docs.content.decode()
    _assert_strict(docs["Content-Security-Policy"], "/api/v1/docs/")
    # The Swagger UI's start-up code is a script file of its own (no inline script).
    script = re.search(r'<script src="([^"]*\?[^"]*script=[^"]*)"', docs.content.decode())
    assert script, "the docs page loads its init script from a URL"
    init = boss.get(script.group(1).replace("&amp;", "&"))
    assert init.status_code == 200 and init["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in init.content.decode()
    outsider = Client()
    outsider.force_login(django_user_model.objects.create_user("nobody", password="pw-nobody-1234"))
    for path in ("/", "/containers/", "/admin/"):
        _assert_strict(outsider.get(path)["Content-Security-Policy"], path)


def test_database_unavailable_page_allows_exactly_its_own_style_block(rf):
    """The 503 page written when the database is gone (handler500) keeps its look under the policy:
    the hash in its header is the hash of the one style block it carries."""
    import base64
    import hashlib

    from django.db import OperationalError

    from dockmon_site import views

    try:
        raise OperationalError("gone")
    except OperationalError:
        response = views.server_error(rf.get("/containers/"))
    assert response.status_code == 503
    styles = re.findall(r"<style>(.*?)</style>", response.content.decode(), re.S)
    assert len(styles) == 1 and " style=" not in response.content.decode()
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    _assert_strict(csp.header_value(response.csp_extra), "503 page", style_extra=(f"'sha256-{digest}'",))


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
HANDLER_ATTRIBUTE = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)


def test_templates_and_page_scripts_carry_no_inline_code():
    """What the policy would block, caught before a browser runs: inline <script> blocks, on*=
    handler attributes, javascript: URLs and style attributes in the templates; eval, new Function
    and string timers in the page scripts; handler attributes in markup the scripts build."""
    templates = sorted((ROOT / "templates").rglob("*.html"))
    assert len(templates) > 10
    for path in templates:
        text = path.read_text()
        where = path.relative_to(ROOT)
        assert not INLINE_SCRIPT.search(text), f"{where}: inline <script>"
        assert not HANDLER_ATTRIBUTE.search(text), f"{where}: inline event handler"
        assert "javascript:" not in text.lower(), f"{where}: javascript: URL"
        assert not re.search(r"\sstyle\s*=", text), f"{where}: style attribute (style-src 'self' applies none)"
        assert "<style" not in text, f"{where}: <style> block"
    scripts = sorted((ROOT / "static" / "dockmon").glob("*.js"))
    assert len(scripts) > 10
    for path in scripts:
        text = path.read_text()
        where = path.relative_to(ROOT)
        assert not re.search(r"\beval\s*\(|new\s+Function\b|set(?:Timeout|Interval)\s*\(\s*[\"'`]", text), f"{where}: code from a string"
        assert not re.search(r"""\son[a-z]+=[\\"']""", text), f"{where}: handler attribute in built markup"
        assert not re.search(r"""\sstyle=\\?["']""", text), f"{where}: style attribute in built markup"
        assert "javascript:" not in text, f"{where}: javascript: URL"


# --- in Chromium ----------------------------------------------------------------------------------

# Added to every document before its own scripts: notes each violation the page reports.
VIOLATIONS_PROBE = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" + e.lineNumber + " " + (e.sample || ""));
}, true);
"""


class Visits:
    """Opens pages in one browser context and keeps what the policy reported."""

    def __init__(self, page, base):
        self.page, self.base = page, base
        self.console: list[str] = []
        self.failed: list[str] = []
        self.found: dict[str, list[str]] = {}
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}") if "Content Security Policy" in m.text else None)
        page.on("response", lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.context.add_init_script(VIOLATIONS_PROBE)

    def open(self, path: str, style_extra: tuple[str, ...] = (), wait_live: bool = True):
        response = self.page.goto(self.base + path)
        assert response.status == 200, (path, response.status)
        _assert_strict(response.headers.get("content-security-policy", ""), path, style_extra=style_extra)
        if wait_live:
            live(self.page)  # the WebSocket opened: connect-src 'self' covers ws:// to the page's own host
        self.page.wait_for_load_state("networkidle")
        return response

    def collect(self, path: str):
        self.found[path] = self.page.evaluate("() => window.__csp.slice()")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_page_runs_under_the_policy_without_a_violation(browser, admin, make_host, alpha, daphne, sync_container,  # noqa: F811
                                                               run_container, admin_client, unique):
    """GIVEN a superuser and a host with a running container, a health check, an alert, a rule, a
    channel, a maintenance window and an update offer with a run
    WHEN every page of the UI, the admin's pages and the API docs are opened (and their forms,
    dialogs and charts used) in Chromium
    THEN every response carries the strict header and the browser reports no violation."""
    from alerts import evaluator
    from alerts.tests.conftest import make_rule
    from updates.choices import RunStatus, UpdateStatus
    from updates.models import ContainerUpdate, UpdateRun

    host = make_host(alpha)
    name = f"csp-{unique}"
    cid = run_container(alpha, name, *LOOP)
    row = sync_container(host, cid)
    key = row.key
    ContainerUpdate.objects.create(container=row, status=UpdateStatus.UPDATE_AVAILABLE, update_available=True, image=row.image,
                                   current_version="1.0", latest_version="1.1", latest_digest="sha256:" + "b" * 64)
    UpdateRun.objects.create(host=host, container=row, container_name=name, old_key=key, status=RunStatus.ROLLED_BACK, stage="rollback",
                             error="the HEALTHCHECK did not report healthy")
    check = admin_client.post("/api/v1/health-checks/", {"container": key, "name": f"home-{unique}", "url": "http://127.0.0.1:9/"},
                              format="json")
    assert check.status_code == 201, check.content
    channel = admin_client.post("/api/v1/notification-channels/", {"name": f"hook-{unique}", "kind": "webhook",
                                                                   "config": {"url": "http://127.0.0.1:9/hook"}}, format="json")
    assert channel.status_code == 201, channel.content
    rule = make_rule("container_stopped", name=f"stopped-{unique}")
    evaluator.apply(rule, evaluator.container_subject(Container.objects.select_related("host").get(pk=key)), evaluator.BREACH,
                    {"state": "exited", "exit_code": 1}, ts=timezone.now(), event_id=10**9)
    window = admin_client.post("/api/v1/maintenance-windows/", {"name": f"night-{unique}", "recurrence": "weekly", "weekdays": [0],
                                                                "start_time": "02:00", "duration_minutes": 30, "timezone": "UTC"},
                               format="json")
    assert window.status_code == 201, window.content

    page, base = login(browser, daphne, "boss", "pw-boss-12345")
    visits = Visits(page, base)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    visits.open("/")
    visits.collect("/")
    page.screenshot(path=str(SCREENSHOTS / "csp-dashboard.png"), full_page=True)

    visits.open("/containers/")
    page.wait_for_selector(f'tr[data-key="{key}"]')
    visits.collect("/containers/")

    visits.open(f"/containers/{key}/")
    page.wait_for_selector("#settings-form[data-loaded='1']")
    page.wait_for_selector("#logs[data-loaded='1']")
    page.click('#actions [data-op="stop"]')  # the confirmation dialog, built by live.js
    page.click("#confirm-dialog #confirm-cancel")
    page.click('[data-range="24h"]')
    page.wait_for_selector("#updates-panel")
    visits.collect("/containers/<key>/")
    page.screenshot(path=str(SCREENSHOTS / "csp-container.png"), full_page=True)

    for path in ("/hosts/", f"/hosts/{host.pk}/", "/events/", "/updates/", "/alerts/channels/", "/password/", "/stacks/"):
        visits.open(path)
        visits.collect(path)

    visits.open("/health/")
    page.click(f'#checks tr[data-id="{check.json()["id"]}"] a.open')
    page.wait_for_selector("#detail-chart[data-points]")
    page.click("#add-panel summary")
    visits.collect("/health/")
    page.screenshot(path=str(SCREENSHOTS / "csp-health.png"), full_page=True)

    visits.open("/alerts/?state=all")
    page.click("#window-panel summary")
    page.select_option("#window-form [name=recurrence]", "weekly")
    assert page.is_visible("#window-form [name=start_time]") and not page.is_visible("#window-form [name=starts_at]")
    page.select_option("#window-form [name=recurrence]", "once")
    assert page.is_visible("#window-form [name=starts_at]") and not page.is_visible("#window-form [name=start_time]")
    page.click("#rule-panel summary")
    visits.collect("/alerts/")
    page.screenshot(path=str(SCREENSHOTS / "csp-alerts.png"), full_page=True)

    # Django's admin and guardian's object-permission screens.
    visits.open(f"/admin/containers/dockerhost/{host.pk}/permissions/", style_extra=(EMPTY_STYLE_BLOCK,), wait_live=False)
    visits.collect("/admin/<host>/permissions/")
    for path in ("/admin/", "/admin/containers/dockerhost/", f"/admin/containers/dockerhost/{host.pk}/change/",
                 "/admin/containers/dockerhost/add/", "/admin/containers/container/", "/admin/auth/user/", f"/admin/auth/user/{admin.pk}/change/",
                 "/admin/alerts/alertrule/add/", "/admin/healthchecks/healthcheck/"):
        visits.open(path, wait_live=False)
        visits.collect(path)
    page.screenshot(path=str(SCREENSHOTS / "csp-admin.png"), full_page=True)

    # DRF's browsable API: its scripts run under script-src 'self' (inline styles allowed there).
    for path in ("/api/v1/hosts/", f"/api/v1/containers/{key}/"):
        visits.open(path, style_extra=("'unsafe-inline'",), wait_live=False)
        visits.collect(path)

    # The API docs: Swagger UI from the sidecar package, its init script a file of its own.
    visits.open("/api/v1/docs/", wait_live=False)
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
    page.click(".swagger-ui .opblock-summary >> nth=0")  # an operation, tried out: the response is drawn
    page.click(".swagger-ui .try-out__btn >> nth=0")
    page.click(".swagger-ui .execute >> nth=0")
    page.wait_for_selector(".swagger-ui .live-responses-table .response-col_status", timeout=15_000)
    visits.collect("/api/v1/docs/")
    page.screenshot(path=str(SCREENSHOTS / "csp-api-docs.png"))

    # The login page, logged out.
    visits.open("/")
    page.click("header form.inline button[type=submit]")
    page.wait_for_url(f"{base}/login/")
    visits.open("/login/", wait_live=False)
    visits.collect("/login/")

    violations = {path: found for path, found in visits.found.items() if found}
    assert not violations, violations
    assert not visits.console, visits.console
    assert not [f for f in visits.failed if "/favicon" not in f], visits.failed
    page.context.close()
