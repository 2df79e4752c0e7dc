"""The alerts API, UI pages and dashboard: fields, validation, secrets, and permissions for an
administrator, a user granted the object (or its host), and an outsider."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from alerts.models import Alert, AlertHistory, AlertRule, MaintenanceWindow, NotificationChannel
from alerts.tests.conftest import make_channel, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(people):
    """Two hosts, a stopped container on the first (testkit/people.py)."""
    return people.on_two_hosts(container={"state": "exited"})


def _alert(rule, container, **extra):
    return Alert.objects.create(rule=rule, kind=rule.kind, dedup_key=f"{rule.pk}|{rule.kind}|container:{container.key}",
                                scope_type="container", scope_id=container.key, host=container.host, container=container,
                                subject_name=container.name, title=f"{container.name} stopped", message="it stopped", **extra)


# ---------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------
def test_alerts_are_visible_only_to_those_who_see_their_container(people):
    rule = make_rule("container_stopped")
    mine, theirs = _alert(rule, people.container), _alert(rule, people.other)
    listed = people.client("admin").get("/api/v1/alerts/").json()
    assert {a["id"] for a in listed["results"]} == {mine.pk, theirs.pk}
    row = next(a for a in listed["results"] if a["id"] == mine.pk)
    for name in ("id", "rule", "kind", "dedup_key", "state", "host", "container", "occurrences", "first_seen_at", "last_seen_at", "message"):
        assert name in row
    assert row["container"] == people.container.key and row["host"] == str(people.host.pk) and row["first_seen_at"].endswith("Z")
    assert [a["id"] for a in people.client("granted").get("/api/v1/alerts/").json()["results"]] == [mine.pk]
    assert [a["id"] for a in people.client("outsider").get("/api/v1/alerts/").json()["results"]] == [theirs.pk]
    assert people.client("outsider").get(f"/api/v1/alerts/{mine.pk}/").status_code == 404
    assert people.client("granted").get(f"/api/v1/alerts/{mine.pk}/").status_code == 200


def test_state_filter(people):
    rule = make_rule("container_stopped")
    open_alert = _alert(rule, people.container)
    acked = _alert(rule, people.other, state="acknowledged")
    done = Alert.objects.create(rule=rule, kind=rule.kind, dedup_key="x", scope_type="container", scope_id=people.container.key,
                                host=people.host, container=people.container, state="resolved")
    client = people.client("admin")

    def ids(query):
        return {a["id"] for a in client.get(f"/api/v1/alerts/?state={query}").json()["results"]}

    assert ids("open") == {open_alert.pk, acked.pk}
    assert ids("firing") == {open_alert.pk}
    assert ids("resolved") == {done.pk}
    assert ids("acknowledged,resolved") == {acked.pk, done.pk}


def test_acknowledge_snooze_resolve_and_notes_by_admin_granted_viewer_and_outsider(people):
    rule = make_rule("container_stopped")
    alert = _alert(rule, people.container)
    base = f"/api/v1/alerts/{alert.pk}"
    assert people.client("outsider").post(f"{base}/acknowledge/").status_code == 404
    assert people.client("viewer").post(f"{base}/acknowledge/").status_code == 403
    response = people.client("granted").post(f"{base}/acknowledge/")
    assert response.status_code == 200 and response.json()["state"] == "acknowledged"
    assert response.json()["acknowledged_by"] == people.granted.username
    assert people.client("granted").post(f"{base}/acknowledge/").status_code == 409

    assert people.client("granted").post(f"{base}/snooze/", {"minutes": 0}, format="json").status_code == 400
    response = people.client("admin").post(f"{base}/snooze/", {"minutes": 30}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "snoozed"
    Alert.objects.filter(pk=alert.pk).update(snoozed_until=timezone.now() - timedelta(seconds=1))
    from alerts import evaluator

    assert evaluator.end_snoozes() == 1 and Alert.objects.get(pk=alert.pk).state == "open"

    assert people.client("viewer").post(f"{base}/notes/", {"text": "looking"}, format="json").status_code == 403
    assert people.client("granted").post(f"{base}/notes/", {"text": ""}, format="json").status_code == 400
    assert people.client("granted").post(f"{base}/notes/", {"text": "disk was full"}, format="json").status_code == 201
    response = people.client("granted").post(f"{base}/resolve/")
    assert response.status_code == 200 and response.json()["state"] == "resolved" and response.json()["resolved_by"] == people.granted.username
    history = people.client("viewer").get(f"{base}/history/").json()
    assert [h["action"] for h in history] == ["acknowledged", "snoozed", "unsnoozed", "note", "resolved"]
    assert history[3]["text"] == "disk was full" and history[3]["user"] == people.granted.username
    assert people.client("outsider").get(f"{base}/history/").status_code == 404
    assert people.client("viewer").get(f"{base}/notifications/").status_code == 200
    assert people.client("outsider").get(f"{base}/notifications/").status_code == 404


def test_operators_role_may_act_on_alerts_it_can_see(people, django_user_model):
    from django.contrib.auth.models import Group

    from accounts.roles import sync_roles

    sync_roles()
    operator = django_user_model.objects.create_user("op-alerts")
    operator.groups.add(Group.objects.get(name="Operators"))
    alert = _alert(make_rule("container_stopped"), people.container)
    client = APIClient()
    client.force_authenticate(operator)
    assert client.post(f"/api/v1/alerts/{alert.pk}/acknowledge/").status_code == 200
    # Operators manage rules on what they can see, but not channels.
    response = client.post("/api/v1/alert-rules/", {"name": "op rule", "kind": "container_stopped"}, format="json")
    assert response.status_code == 201, response.content
    assert client.post("/api/v1/notification-channels/", {"name": "x", "kind": "ntfy", "config": {"topic": "t"}},
                       format="json").status_code == 403


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------
def test_rule_crud_fields_and_validation(people):
    client = people.client("admin")
    channel = make_channel("ntfy", name="n1", topic="t")
    body = {"name": "web cpu", "kind": "cpu_high", "scope": "containers", "containers": [people.container.key], "threshold": 90,
            "clear_threshold": 70, "duration_seconds": 300, "cooldown_seconds": 600, "severity": "error", "auto_resolve": True,
            "notify_on_resolve": False, "channels": [channel.pk], "name_regex": "^web-", "enabled": True,
            "title_template": "{{ container }} hot: {{ value }}%"}
    response = client.post("/api/v1/alert-rules/", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["containers"] == [people.container.key] and data["channels"] == [channel.pk] and data["open_alerts"] == 0
    assert data["threshold"] == 90 and data["clear_threshold"] == 70 and data["severity"] == "error"
    rule_url = f"/api/v1/alert-rules/{data['id']}/"
    response = client.patch(rule_url, {"scope": "tags", "tags": ["prod", "web"]}, format="json")
    assert response.status_code == 200 and sorted(response.json()["tags"]) == ["prod", "web"]

    bad = {
        "kind": {"kind": "nope"},
        "threshold": {"kind": "cpu_high", "threshold": None},
        "threshold_unit": {"kind": "cpu_high", "threshold": 5, "threshold_unit": "gib"},
        "clear_threshold": {"kind": "cpu_high", "threshold": 50, "clear_threshold": 60},
        "hosts": {"kind": "container_stopped", "scope": "hosts", "hosts": []},
        "scope": {"kind": "host_offline", "scope": "tags", "tags": ["x"]},
        "name_regex": {"kind": "container_stopped", "name_regex": "(a+)+$"},
        "title_template": {"kind": "container_stopped", "title_template": "{% if %}"},
        "channels": {"kind": "container_stopped", "channels": [999999]},
    }
    for field, extra in bad.items():
        response = client.post("/api/v1/alert-rules/", {"name": "bad", **extra}, format="json")
        assert response.status_code == 400 and field in response.json(), (field, response.content)


def test_rules_are_visible_to_the_granted_user_only_within_what_they_see(people):
    rule = make_rule("container_stopped", name="on web")
    rule.containers.set([people.container])
    hidden = make_rule("container_stopped", name="on db", scope="containers")
    hidden.containers.set([people.other])
    assign_perm("alerts.view_alertrule", people.granted, rule)
    assign_perm("alerts.change_alertrule", people.granted, rule)
    assign_perm("alerts.view_alertrule", people.granted, hidden)
    assert {r["id"] for r in people.client("admin").get("/api/v1/alert-rules/").json()["results"]} >= {rule.pk, hidden.pk}
    # The second rule names a container the user cannot see: it stays hidden.
    assert [r["id"] for r in people.client("granted").get("/api/v1/alert-rules/").json()["results"]] == [rule.pk]
    assert people.client("granted").patch(f"/api/v1/alert-rules/{rule.pk}/", {"enabled": False}, format="json").status_code == 200
    assert people.client("granted").delete(f"/api/v1/alert-rules/{rule.pk}/").status_code == 403
    assert people.client("outsider").get(f"/api/v1/alert-rules/{rule.pk}/").status_code == 404
    assert people.client("outsider").patch(f"/api/v1/alert-rules/{rule.pk}/", {"enabled": True}, format="json").status_code == 404
    assert people.client("outsider").post("/api/v1/alert-rules/", {"name": "x", "kind": "container_stopped"}, format="json").status_code == 403


def test_a_rule_cannot_name_a_host_or_container_its_author_cannot_see(people):
    assign_perm("alerts.add_alertrule", people.granted)
    client = people.client("granted")
    response = client.post("/api/v1/alert-rules/", {"name": "x", "kind": "container_stopped", "scope": "containers",
                                                    "containers": [people.other.key]}, format="json")
    assert response.status_code == 400 and "containers" in response.json()
    response = client.post("/api/v1/alert-rules/", {"name": "x", "kind": "host_offline", "scope": "hosts",
                                                    "hosts": [str(people.other_host.pk)]}, format="json")
    assert response.status_code == 400 and "hosts" in response.json()
    response = client.post("/api/v1/alert-rules/", {"name": "x", "kind": "host_offline", "scope": "hosts",
                                                    "hosts": [str(people.host.pk)]}, format="json")
    assert response.status_code == 201


# ---------------------------------------------------------------------------
# Channels
# ---------------------------------------------------------------------------
def test_channel_secrets_are_encrypted_and_never_returned(people):
    client = people.client("admin")
    body = {"name": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/h?key=url-secret",
                                                          "headers": {"Authorization": "Bearer hdr-secret"}}}
    response = client.post("/api/v1/notification-channels/", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    text = response.content.decode()
    assert "url-secret" not in text and "hdr-secret" not in text
    assert data["secret_fields_set"] == ["headers", "url"] and data["config"] == {"header_names": ["Authorization"]}
    channel = NotificationChannel.objects.get(pk=data["id"])
    assert channel.full_config["headers"] == {"Authorization": "Bearer hdr-secret"}
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM alerts_notificationchannel WHERE id = %s", [channel.pk])
        raw = cursor.fetchone()[0]
    assert raw.startswith("fernet:") and "secret" not in raw
    # Re-sending what was read keeps the secrets; blank secrets are kept too.
    response = client.patch(f"/api/v1/notification-channels/{channel.pk}/", {"config": {"url": ""}, "name": "hook2"}, format="json")
    assert response.status_code == 200, response.content
    channel.refresh_from_db()
    assert channel.full_config["url"].endswith("key=url-secret") and channel.name == "hook2"
    listed = client.get("/api/v1/notification-channels/").content.decode()
    assert "url-secret" not in listed and "hdr-secret" not in listed
    # Not in the audit log either.
    from accounts.models import AuditEntry

    for entry in AuditEntry.objects.all():
        assert "url-secret" not in str(entry.changes) and "hdr-secret" not in str(entry.changes)


def test_channel_validation(people):
    client = people.client("admin")
    cases = [
        {"name": "a", "kind": "pigeon", "config": {}},
        {"name": "b", "kind": "telegram", "config": {"chat_id": "1"}},
        {"name": "c", "kind": "webhook", "config": {"url": "ftp://x"}},
        {"name": "d", "kind": "webhook", "config": {"url": "http://127.0.0.1/", "headers": {"Bad Name": "x"}}},
        {"name": "e", "kind": "email", "config": {"to": ["not-an-address"]}},
        {"name": "f", "kind": "apprise", "config": {"url": "nonsense-scheme-only"}},
        {"name": "g", "kind": "ntfy", "config": {"topic": "t", "surprise": 1}},
    ]
    for body in cases:
        response = client.post("/api/v1/notification-channels/", body, format="json")
        assert response.status_code == 400, (body, response.content)


def test_channel_permissions_and_test_action(people, receiver):
    channel = make_channel("webhook", name="shared", url=receiver.url("/t"))
    secret_one = make_channel("webhook", name="private", url=receiver.url("/p"))
    assign_perm("alerts.view_notificationchannel", people.granted, channel)
    assign_perm("alerts.change_notificationchannel", people.granted, channel)
    assign_perm("alerts.view_notificationchannel", people.viewer, channel)
    assert [c["id"] for c in people.client("granted").get("/api/v1/notification-channels/").json()["results"]] == [channel.pk]
    assert people.client("outsider").get("/api/v1/notification-channels/").json()["results"] == []
    assert people.client("outsider").get(f"/api/v1/notification-channels/{channel.pk}/").status_code == 404
    assert people.client("outsider").post(f"/api/v1/notification-channels/{channel.pk}/test/").status_code == 404
    assert people.client("viewer").post(f"/api/v1/notification-channels/{channel.pk}/test/").status_code == 403
    assert people.client("granted").post(f"/api/v1/notification-channels/{secret_one.pk}/test/").status_code == 404
    response = people.client("granted").post(f"/api/v1/notification-channels/{channel.pk}/test/")
    assert response.status_code == 200 and response.json()["ok"] is True
    assert receiver.on("/t")[0]["body"]["event"] == "test"
    receiver.script("/t", [(401, {})])
    response = people.client("admin").post(f"/api/v1/notification-channels/{channel.pk}/test/")
    assert response.json()["ok"] is False and response.json()["permanent"] is True and response.json()["status_code"] == 401
    assert NotificationChannel.objects.get(pk=channel.pk).enabled  # a test reports; it does not disable
    assert people.client("granted").delete(f"/api/v1/notification-channels/{channel.pk}/").status_code == 403
    assert people.client("admin").delete(f"/api/v1/notification-channels/{channel.pk}/").status_code == 204


# ---------------------------------------------------------------------------
# Maintenance windows
# ---------------------------------------------------------------------------
def test_maintenance_windows_api(people):
    client = people.client("admin")
    now = timezone.now()
    response = client.post("/api/v1/maintenance-windows/", {"name": "weekly", "recurrence": "weekly", "weekdays": [5, 6],
                                                            "start_time": "02:00", "duration_minutes": 90,
                                                            "timezone": "Europe/Berlin", "host": str(people.host.pk)}, format="json")
    assert response.status_code == 201, response.content
    host_window = response.json()
    response = client.post("/api/v1/maintenance-windows/", {"name": "now", "starts_at": now.isoformat(),
                                                            "ends_at": (now + timedelta(hours=1)).isoformat()}, format="json")
    assert response.status_code == 201 and response.json()["active_now"] is True
    for bad in ({"name": "x", "recurrence": "weekly", "weekdays": [9], "start_time": "01:00"},
                {"name": "x", "starts_at": now.isoformat(), "ends_at": (now - timedelta(hours=1)).isoformat()},
                {"name": "x", "recurrence": "weekly", "weekdays": [1], "start_time": "01:00", "timezone": "Mars/Base"}):
        assert client.post("/api/v1/maintenance-windows/", bad, format="json").status_code == 400
    assert [w["id"] for w in people.client("granted").get("/api/v1/maintenance-windows/").json()["results"]] == [host_window["id"]]
    assert people.client("outsider").get(f"/api/v1/maintenance-windows/{host_window['id']}/").status_code == 404
    assert people.client("outsider").post("/api/v1/maintenance-windows/", {"name": "x"}, format="json").status_code == 403
    assert MaintenanceWindow.objects.count() == 2


# ---------------------------------------------------------------------------
# UI and dashboard
# ---------------------------------------------------------------------------
def test_alert_and_channel_pages_and_the_dashboard_show_only_what_the_user_may_see(people, client, django_assert_max_num_queries):
    from containers.dashboard import dashboard_data

    rule = make_rule("container_stopped")
    _alert(rule, people.container)
    _alert(rule, people.other)
    make_channel("ntfy", name="ops-ntfy", topic="t")
    client.force_login(people.admin)
    page = client.get("/alerts/").content.decode()
    assert f"{people.container.name} stopped" in page and f"{people.other.name} stopped" in page and 'data-act="resolve"' in page
    assert "ops-ntfy" in client.get("/alerts/channels/").content.decode()
    assert len(dashboard_data(people.admin)["alerts"]) == 2
    client.force_login(people.outsider)
    page = client.get("/alerts/").content.decode()
    assert f"{people.container.name} stopped" not in page and f"{people.other.name} stopped" in page and 'data-act="resolve"' not in page
    assert "ops-ntfy" not in client.get("/alerts/channels/").content.decode()
    from alerts.views import open_alerts

    with django_assert_max_num_queries(8):
        alerts = open_alerts(people.outsider)
    assert [a["message"] for a in alerts] == [f"{people.other.name} stopped"]
    assert client.get("/alerts/?state=resolved").status_code == 200


def test_alert_admin_shows_only_visible_alerts(people, client):
    rule = make_rule("container_stopped")
    mine = _alert(rule, people.container)
    theirs = _alert(rule, people.other)
    people.granted.is_staff = True
    people.granted.save()
    client.force_login(people.granted)
    page = client.get("/admin/alerts/alert/")
    assert page.status_code == 200
    text = page.content.decode()
    assert mine.title in text and theirs.title not in text
    assert client.get(f"/admin/alerts/alert/{theirs.pk}/change/").status_code in (302, 403, 404)
    client.force_login(people.admin)
    for path in ("alert", "alertrule", "notificationchannel", "maintenancewindow", "notification", "conditionstate",
                 "subjectstate", "alerthistory"):
        assert client.get(f"/admin/alerts/{path}/").status_code == 200, path
    assert AlertHistory.objects.count() == 0
    assert AlertRule.objects.count() == 1


def test_out_of_range_channel_ids_are_a_400_not_a_500(people):
    """Found by the schema fuzzer: an id too big for the database's integer must be refused up front."""
    response = people.client("admin").post(
        "/api/v1/alert-rules/", {"name": "big", "kind": "container_stopped", "channels": [2**70]}, format="json"
    )
    assert response.status_code == 400 and "channels" in response.data
