"""The audit log: what is recorded, from which surface, and who may read it."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from accounts import audit
from accounts.models import APIToken, AuditEntry

pytestmark = pytest.mark.django_db


def _csv(response) -> list[dict]:
    text = response.content.decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_unsafe_api_calls_are_recorded_once_with_who_what_and_outcome(world):
    token, raw = APIToken.issue(world.admin, name="auditor")
    client = world.client(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    client.get("/api/v1/hosts/")  # reads are not audited
    response = client.patch(f"/api/v1/hosts/{world.host_b.pk}/", {"enabled": False, "tls_key": "-----BEGIN nope"}, format="json",
                            REMOTE_ADDR="127.0.0.9")
    assert response.status_code == 400  # a bad key: refused, and still recorded
    response = client.patch(f"/api/v1/hosts/{world.host_b.pk}/", {"enabled": False}, format="json", REMOTE_ADDR="127.0.0.9")
    assert response.status_code == 200
    rows = list(AuditEntry.objects.filter(action="host.partial_update").order_by("id"))
    assert [r.status_code for r in rows] == [400, 200]
    row = rows[-1]
    assert (row.user, row.username, row.token_id, row.ip, row.method, row.source) == (world.admin, world.admin.username, token.pk,
                                                                                      "127.0.0.9", "PATCH", "api")
    assert (row.object_type, row.object_id, row.object_repr) == ("containers.dockerhost", str(world.host_b.pk), world.host_b.name)
    assert row.changes == {"enabled": False} and row.path == f"/api/v1/hosts/{world.host_b.pk}/"
    assert rows[0].changes["tls_key"] == audit.REDACTED
    assert not AuditEntry.objects.filter(method="GET").exists()
    # Refused calls are recorded too, anonymous ones without a user.
    world.client("outsider").delete(f"/api/v1/hosts/{world.host_a.pk}/")
    world.client(None).post("/api/v1/users/", {"username": "x", "password": "secret-secret"}, format="json")
    assert AuditEntry.objects.get(action="host.destroy").status_code == 404
    anonymous = AuditEntry.objects.get(action="user.create")
    assert anonymous.user is None and anonymous.status_code == 401 and anonymous.changes["password"] == audit.REDACTED


def test_record_folds_into_the_api_row_or_writes_its_own(world, rf):
    # Outside a request (a task, the monitor): a row of its own, from the system or a user.
    system = audit.record(None, "container.auto_restart", obj=world.a1, changes={"attempt": 1})
    assert system.source == "system" and system.user is None and system.object_id == world.a1.key
    by_user = audit.record(world.granted, "container.restart", obj=world.a1, status=200)
    assert by_user.username == world.granted.username and by_user.status_code == 200
    # With a plain request: ip, method, path.
    request = rf.post("/ui/containers/x/stop/", REMOTE_ADDR="127.0.0.7")
    request.user = world.admin
    row = audit.record(request, "container.stop", obj=world.a1)
    assert (row.ip, row.method, row.path, row.source, row.user) == ("127.0.0.7", "POST", "/ui/containers/x/stop/", "ui", world.admin)
    # A failing write never raises into the caller.
    assert audit.record(None, "x" * 500, obj=world.a1) is not None


def test_audit_api_admins_see_everything_others_their_own_and_csv(world):
    audit.record(world.granted, "container.restart", obj=world.a1)
    audit.record(world.outsider, "container.restart", obj=world.b1)
    audit.record(world.admin, "host.test", obj=world.host_a, changes={"formula": "=cmd()"})
    admin = world.client("admin")
    assert admin.get("/api/v1/audit/").json()["count"] == 3
    assert [e["username"] for e in world.client("granted").get("/api/v1/audit/").json()["results"]] == [world.granted.username]
    assert world.client("granted").get(f"/api/v1/audit/{AuditEntry.objects.get(user=world.outsider).pk}/").status_code == 404
    assert admin.get("/api/v1/audit/", {"action": "container."}).json()["count"] == 2
    assert admin.get("/api/v1/audit/", {"user": world.outsider.pk}).json()["count"] == 1
    assert admin.get("/api/v1/audit/", {"object_id": world.a1.key}).json()["count"] == 1
    assert admin.get("/api/v1/audit/", {"source": "system"}).json()["count"] == 3
    for url, params in (("/api/v1/audit/", {"format": "csv"}), ("/api/v1/audit/export/", {})):
        response = admin.get(url, {**params, "action": "container."})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), url
        assert response["Content-Disposition"].startswith("attachment")
        rows = _csv(response)
        assert sorted(r["username"] for r in rows) == sorted([world.granted.username, world.outsider.username])
    everything = _csv(admin.get("/api/v1/audit/export/"))
    # Spreadsheet formulas in user-controlled text are neutralised.
    assert any(r["changes"].startswith('{"formula": "=cmd') for r in everything)
    outsider_rows = _csv(world.client("outsider").get("/api/v1/audit/", {"format": "csv"}))
    assert [r["username"] for r in outsider_rows] == [world.outsider.username]
    assert world.client(None).get("/api/v1/audit/export/").status_code == 401


def test_admin_changes_bulk_actions_and_logins_are_recorded(world, fresh_lockout):
    fresh_lockout(address="127.0.0.1")
    world.admin.set_password("pw-admin-12345")
    world.admin.save()
    browser = Client()
    assert browser.post("/admin/login/?next=/admin/", {"username": world.admin.username, "password": "pw-admin-12345"}).status_code == 302
    assert AuditEntry.objects.filter(action="auth.login", user=world.admin, source="admin").exists()
    # A change through a change form: from Django's LogEntry, with the request's address.
    token, _ = APIToken.issue(world.granted, name="before")
    response = browser.post(f"/admin/accounts/apitoken/{token.pk}/change/",
                            {"user": world.granted.pk, "name": "after", "read_only": "on"})
    assert response.status_code == 302
    row = AuditEntry.objects.get(action="admin.change")
    assert (row.object_type, row.object_id, row.user, row.ip) == ("accounts.apitoken", str(token.pk), world.admin, "127.0.0.1")
    assert "Name" in str(row.changes) or "name" in str(row.changes)
    # An admin action (no LogEntry): recorded from the request.
    other, _ = APIToken.issue(world.granted, name="other")
    browser.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [token.pk, other.pk]})
    action_row = AuditEntry.objects.get(action="admin.revoke")
    assert sorted(action_row.changes["_selected_action"]) == sorted([str(token.pk), str(other.pk)])
    assert action_row.status_code == 302 and action_row.user == world.admin
    # A failed login is recorded without the password.
    Client().post("/admin/login/", {"username": world.admin.username, "password": "wrong-password-x"})
    failed = AuditEntry.objects.get(action="auth.login_failed")
    assert failed.changes == {"username": world.admin.username} and "wrong-password" not in str(failed.changes)
    # The audit log itself is read-only in the admin, and filterable.
    page = browser.get("/admin/accounts/auditentry/?source__exact=admin")
    assert page.status_code == 200 and "admin.change" in page.content.decode()
    assert browser.get(f"/admin/accounts/auditentry/{row.pk}/change/").status_code == 200
    assert browser.post(f"/admin/accounts/auditentry/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=row.pk).exists()


def test_permission_changes_from_the_admin_screens_need_grant_rights(world, django_user_model):
    # A staff user with model-level change on hosts but no right to manage grants.
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("hoststaff", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["change_dockerhost", "view_dockerhost"]))
    browser = Client()
    browser.force_login(staff)
    response = browser.get(f"/admin/containers/dockerhost/{world.host_a.pk}/permissions/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    admin_browser = Client()
    admin_browser.force_login(world.admin)
    page = admin_browser.get(f"/admin/containers/dockerhost/{world.host_a.pk}/permissions/")
    assert page.status_code == 200 and world.granted.username in page.content.decode()


def test_an_operation_recorded_by_a_service_during_an_api_call_is_one_row(world, rf):
    from django.http import HttpResponse

    def view(request):
        # A service function that knows only the user (containers.operations style).
        audit.record(world.admin, "container.stop", obj=world.a1, changes={"timeout": 0}, status=200)
        audit.record(world.admin, "container.stop", obj=world.a2, status=200)  # a second object: its own row
        return HttpResponse(status=200)

    request = rf.post("/api/v1/containers/bulk/", data={"action": "stop"}, content_type="application/json", REMOTE_ADDR="127.0.0.8")
    request.user = world.admin
    audit.AuditMiddleware(view)(request)
    rows = list(AuditEntry.objects.order_by("id"))
    assert [(r.action, r.object_id, r.ip, r.status_code) for r in rows] == [
        ("container.stop", world.a2.key, "127.0.0.8", 200),
        ("container.stop", world.a1.key, "127.0.0.8", 200),
    ]
    assert rows[1].changes == {"timeout": 0} and rows[1].path == "/api/v1/containers/bulk/"


def test_values_postgresql_cannot_store_are_handled(world):
    # Found by the fuzzer on PostgreSQL: a NUL character in a body, an offset beyond ±15:59.
    row = audit.record(world.admin, "x.nul", changes={"a\x00b": "c\x00d"}, object_repr="r\x00")
    assert row is not None and AuditEntry.objects.get(pk=row.pk).changes == {"a\ufffdb": "c\ufffdd"}
    admin = world.client("admin")
    for value in ("0219-12-22T08:36:28.715717+18:00", "2026-01-01T00:00:00Z"):
        for url in ("/api/v1/audit/", "/api/v1/audit/export/"):
            assert admin.get(url, {"until": value}).status_code == 200, (url, value)
    assert admin.get("/api/v1/audit/", {"since": "0001-01-01T00:00:00+05:00"}).status_code == 400
    assert admin.get("/api/v1/audit/", {"ip": "not-an-address"}).status_code == 400
    assert admin.get("/api/v1/audit/", {"ip": "127.0.0.1"}).status_code == 200


def test_a_form_body_the_audit_log_cannot_parse_is_left_to_the_view(world):
    """GIVEN a form body with more fields than Django parses (found by the API fuzzer) WHEN it is
    POSTed, as multipart or urlencoded THEN the answer is 400, not 500 (the audit middleware
    reads the body first and must not consume it), and the call is still recorded."""
    admin = world.client("admin")
    fields = {f"patterns{i}": "x" for i in range(1100)}
    response = admin.post("/api/v1/update-policy-categories/", {"name": "many", **fields}, format="multipart")
    assert response.status_code == 400, response.content[:200]
    body = "&".join(f"f{i}=x" for i in range(1100))
    response = admin.generic("POST", "/api/v1/groups/", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400, response.content[:200]
    assert AuditEntry.objects.filter(path="/api/v1/update-policy-categories/", status_code=400).count() == 1
    # An ordinary form still reaches the view and the audit row.
    assert admin.post("/api/v1/groups/", {"name": "formed"}, format="multipart").status_code == 201
    assert AuditEntry.objects.get(path="/api/v1/groups/", status_code=201).changes == {"name": "formed"}


def test_a_json_null_body_is_still_recorded(world):
    # Found by the API fuzzer: `null` as the body made the row's changes NULL and the row was lost.
    admin = world.client("admin")
    response = admin.generic("POST", "/api/v1/groups/", "null", content_type="application/json")
    assert response.status_code == 400
    row = AuditEntry.objects.get(path="/api/v1/groups/", method="POST")
    assert row.status_code == 400 and row.changes == {}
