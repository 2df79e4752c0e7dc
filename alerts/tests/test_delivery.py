"""Delivery: every transport's request against a local receiver, retries with backoff, 429
Retry-After, permanent errors disabling the channel, SMTP against a real server, Apprise, and
maintenance windows holding notifications until they end."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from alerts import notify
from alerts.models import Alert, DeliveryAttempt, MaintenanceWindow, Notification, NotificationChannel
from alerts.tests.conftest import die, make_channel, make_rule, start
from containers.models import Event
from testkit.testing import wait_for

# ---------------------------------------------------------------------------
# Each transport's request
# ---------------------------------------------------------------------------
CASES = [
    ("pushover", {"user_key": "uk", "app_token": "at"}, "/1/messages.json"),
    ("telegram", {"bot_token": "123:abc", "chat_id": "42"}, "/bot123:abc/sendMessage"),
    ("discord", {"webhook_url": "https://discord.com/api/webhooks/1/tok"}, "/api/webhooks/1/tok"),
    ("slack", {"webhook_url": "/services/T/B/X"}, "/services/T/B/X"),
    ("teams", {"webhook_url": "/webhookb2/abc"}, "/webhookb2/abc"),
    ("googlechat", {"webhook_url": "/v1/spaces/S/messages?key=k&token=t"}, "/v1/spaces/S/messages"),
    ("gotify", {"app_token": "gt"}, "/message"),
    ("ntfy", {"topic": "dockmon-alerts", "access_token": "tk"}, "/dockmon-alerts"),
    ("webhook", {"url": "/generic", "headers": {"X-Api-Key": "k1"}}, "/generic"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("kind", "config", "path"), CASES, ids=[c[0] for c in CASES])
def test_each_transport_sends_its_services_request_to_the_configured_base_url(receiver, kind, config, path):
    channel = make_channel(kind, name=f"t-{kind}", base_url=receiver.url("/"), **config)
    result = notify.send_test(channel)
    assert result["ok"], result
    [request] = receiver.requests
    assert request["path"] == path
    body, headers = request["body"], request["headers"]
    title = "DockMon test notification"
    if kind == "pushover":
        assert "token=at" in request["raw"].decode() and "user=uk" in request["raw"].decode()
    elif kind == "telegram":
        assert body["chat_id"] == "42" and title in body["text"]
    elif kind == "discord":
        assert body["embeds"][0]["title"] == title
    elif kind in ("slack", "googlechat"):
        assert title in body["text"]
        if kind == "googlechat":
            assert "key=k" in request["query"]
    elif kind == "teams":
        assert body["@type"] == "MessageCard" and body["title"] == title
    elif kind == "gotify":
        assert headers["X-Gotify-Key"] == "gt" and body["title"] == title
    elif kind == "ntfy":
        assert headers["Title"] == title and headers["Authorization"] == "Bearer tk"
    elif kind == "webhook":
        assert headers["X-Api-Key"] == "k1" and body["event"] == "test" and body["title"] == title
    note = Notification.objects.get(pk=result["notification"])
    assert note.status == "sent" and note.deliveries.get().ok


@pytest.mark.django_db
def test_settings_base_url_is_used_when_the_channel_has_none(receiver, settings):
    settings.DOCKMON_NTFY_URL = receiver.url("/ntfy-base/")
    channel = make_channel("ntfy", name="ntfy-default", topic="t1")
    assert notify.send_test(channel)["ok"]
    assert receiver.requests[0]["path"] == "/ntfy-base/t1"


@pytest.mark.django_db
def test_apprise_url_channel_delivers_through_apprise(receiver):
    channel = make_channel("apprise", name="apprise", url=f"json://127.0.0.1:{receiver.port}/apprise")
    assert notify.send_test(channel)["ok"]
    [request] = receiver.on("/apprise")
    assert request["body"]["title"] == "DockMon test notification"


@pytest.mark.django_db
def test_email_goes_through_a_real_smtp_server(smtp_server, rows):
    channel = make_channel("email", name="mail", host="127.0.0.1", port=smtp_server.port, to=["ops@example.test"],
                           from_address="dockmon@example.test")
    rule = make_rule("container_stopped", [channel])
    from alerts import evaluator

    event = Event.objects.create(category="container", type="container.state", host=rows.host, container_key=rows.container.key,
                                 data={"state": "exited", "previous_state": "running", "exit_code": 3})
    evaluator.evaluate_event(event.pk)
    note = Notification.objects.get(channel=channel)
    assert notify.send(note.pk) == "sent"
    [message] = smtp_server.messages
    assert message["to"] == ["ops@example.test"] and message["from"] == "dockmon@example.test"
    assert f"Subject: {rows.container.name} stopped on {rows.host.name}" in message["data"]
    assert "exit code 3" in message["data"]
    assert Alert.objects.get(rule=rule).state == "open"


@pytest.mark.django_db
def test_email_to_an_unreachable_smtp_server_is_retried_not_disabled(rows):
    from testkit.testing import free_port

    channel = make_channel("email", name="mail-down", host="127.0.0.1", port=free_port(), to="ops@example.test")
    result = notify.send_test(channel)
    assert not result["ok"] and not result["permanent"] and "email:" in result["error"]


# ---------------------------------------------------------------------------
# Retries, 429, permanent errors
# ---------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_receiver_answering_500_then_200_gets_the_notification_after_a_retry(eager, receiver, rows, settings):
    settings.DOCKMON_NOTIFY_BACKOFF_SECONDS = 0.05
    receiver.script("/flaky", [(500, {})])
    channel = make_channel("webhook", name="flaky", url=receiver.url("/flaky"))
    make_rule("container_stopped", [channel])
    die(rows.container)
    note = wait_for(lambda: Notification.objects.filter(channel=channel).first(), message="queued")
    wait_for(lambda: len(receiver.on("/flaky")) >= 1, message="first attempt")
    note.refresh_from_db()
    assert note.status == "pending" and note.attempts == 1 and "HTTP 500" in note.last_error
    # The retry is due after the (tiny) backoff; the dispatcher's sweep sends it.
    wait_for(lambda: notify.dispatch_due(inline=True) >= 0 and Notification.objects.filter(pk=note.pk, status="sent").exists(),
             timeout=10, message="sent on retry")
    assert [r["body"]["event"] for r in receiver.on("/flaky")] == ["fired", "fired"]
    assert list(DeliveryAttempt.objects.filter(notification=note).values_list("ok", "status_code")) == [(False, 500), (True, None)]
    assert NotificationChannel.objects.get(pk=channel.pk).enabled


@pytest.mark.django_db(transaction=True)
def test_a_receiver_answering_401_disables_the_channel_with_the_reason(eager, receiver, rows):
    receiver.script("/bad", [(401, {})])
    channel = make_channel("webhook", name="bad-token", url=receiver.url("/bad"))
    make_rule("container_stopped", [channel])
    die(rows.container)
    channel = wait_for(lambda: NotificationChannel.objects.filter(pk=channel.pk, enabled=False).first(), message="disabled")
    assert "HTTP 401" in channel.disabled_reason and "refused" in channel.disabled_reason
    note = Notification.objects.get(channel=channel)
    assert note.status == "failed" and note.attempts == 1
    assert Event.objects.filter(type="alert.channel_disabled", data__channel=channel.pk).exists()
    # Nothing more goes to a disabled channel; a person turning it on clears the reason.
    start(rows.container)
    die(rows.container)
    assert len(receiver.on("/bad")) == 1
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("chan-admin", password=None))
    response = client.patch(f"/api/v1/notification-channels/{channel.pk}/", {"enabled": True}, format="json")
    assert response.status_code == 200 and response.json()["disabled_reason"] == ""


@pytest.mark.django_db
def test_429_retry_after_is_honoured(receiver, rows):
    receiver.script("/busy", [(429, {"Retry-After": "120"})])
    channel = make_channel("webhook", name="busy", url=receiver.url("/busy"))
    make_rule("container_stopped", [channel])
    from alerts import evaluator

    event = Event.objects.create(category="container", type="container.state", host=rows.host, container_key=rows.container.key,
                                 data={"state": "exited", "previous_state": "running", "exit_code": 1})
    evaluator.evaluate_event(event.pk)
    note = Notification.objects.get(channel=channel)
    before = timezone.now()
    assert notify.send(note.pk) == "pending"
    note.refresh_from_db()
    assert 119 <= (note.next_attempt_at - before).total_seconds() <= 121
    # Not due yet: the sweep leaves it alone.
    assert notify.dispatch_due(inline=True) == 0 and len(receiver.on("/busy")) == 1


def test_backoff_grows_exponentially_with_jitter_and_is_capped(settings):
    settings.DOCKMON_NOTIFY_BACKOFF_SECONDS = 10
    settings.DOCKMON_NOTIFY_BACKOFF_MAX_SECONDS = 100
    for attempt, full in ((1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)):
        delays = {notify.backoff(attempt) for _ in range(20)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered


@pytest.mark.django_db
def test_after_the_last_attempt_the_notification_fails(receiver, rows, settings):
    settings.DOCKMON_NOTIFY_MAX_ATTEMPTS = 2
    receiver.script("/down", [(503, {}), (503, {})])
    channel = make_channel("webhook", name="down", url=receiver.url("/down"))
    note = Notification.objects.create(channel=channel, event="fired", title="t", body="b")
    assert notify.send(note.pk) == "pending"
    Notification.objects.filter(pk=note.pk).update(next_attempt_at=timezone.now())
    assert notify.send(note.pk) == "failed"
    assert notify.send(note.pk) is None  # nothing left to claim


# ---------------------------------------------------------------------------
# Maintenance windows
# ---------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_within_a_blackout_nothing_is_sent_and_the_still_open_alert_is_sent_once_after(eager, receiver, rows, unique):
    from containers.models import Container

    channel = make_channel("webhook", name="bo", url=receiver.url("/bo"))
    make_rule("container_stopped", [channel])
    now = timezone.now()
    window = MaintenanceWindow.objects.create(name="patching", host=rows.host, starts_at=now - timedelta(minutes=5),
                                              ends_at=now + timedelta(hours=1))
    other = Container.objects.create(host=rows.host, container_id="f" * 64, short_id="f" * 12, name=f"db-{unique}", state="running")
    die(rows.container)
    die(other)
    start(other)  # resolved within the window: never sent at all
    assert Alert.objects.filter(state="open").count() == 1
    assert set(Notification.objects.values_list("status", flat=True)) == {"held", "skipped"}
    assert notify.release_held() == 0 and notify.dispatch_due(inline=True) == 0
    assert receiver.requests == []

    MaintenanceWindow.objects.filter(pk=window.pk).update(ends_at=timezone.now() - timedelta(seconds=1))
    assert notify.release_held() == 1
    notify.dispatch_due(inline=True)
    assert notify.release_held() == 0
    notify.dispatch_due(inline=True)
    [sent] = receiver.requests
    assert sent["body"]["alert"]["container"] == rows.container.key and sent["body"]["event"] == "fired"


@pytest.mark.django_db
def test_weekly_windows_follow_their_time_zone_across_midnight():
    window = MaintenanceWindow(name="nightly", recurrence="weekly", weekdays=[6], start_time=time(23, 0), duration_minutes=120,
                               timezone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    # Sunday 2025-06-01 23:30 in Berlin (CEST, UTC+2) is inside; Monday 00:59 too; Monday 01:00 is out.
    assert window.active_at(datetime(2025, 6, 1, 23, 30, tzinfo=berlin))
    assert window.active_at(datetime(2025, 6, 2, 0, 59, tzinfo=berlin))
    assert not window.active_at(datetime(2025, 6, 2, 1, 0, tzinfo=berlin))
    assert not window.active_at(datetime(2025, 6, 1, 22, 59, tzinfo=berlin))
    # The same instant in UTC: 21:30 UTC Sunday.
    assert window.active_at(datetime(2025, 6, 1, 21, 30, tzinfo=ZoneInfo("UTC")))
    # Winter time (CET, UTC+1): 23:30 Berlin is 22:30 UTC.
    assert window.active_at(datetime(2025, 1, 5, 22, 30, tzinfo=ZoneInfo("UTC")))
    assert window.current_end(datetime(2025, 1, 5, 22, 30, tzinfo=ZoneInfo("UTC"))) == datetime(2025, 1, 6, 0, 0, tzinfo=ZoneInfo("UTC"))
    assert not MaintenanceWindow(name="off", recurrence="weekly", weekdays=[6], start_time=time(23, 0), enabled=False,
                                 timezone="UTC").active_at(datetime(2025, 6, 1, 23, 30, tzinfo=ZoneInfo("UTC")))


@pytest.mark.django_db
def test_windows_cover_global_host_and_container_scopes(rows):
    now = timezone.now()
    span = {"starts_at": now - timedelta(minutes=1), "ends_at": now + timedelta(minutes=1)}
    assert MaintenanceWindow(name="g", **span).covers(rows.host.pk, rows.container.key)
    assert MaintenanceWindow(name="h", host=rows.host, **span).covers(rows.host.pk, "")
    assert not MaintenanceWindow(name="c", container=rows.container, **span).covers(rows.host.pk, "other:key")
    assert notify.active_window(rows.host.pk, rows.container.key) is None
    MaintenanceWindow.objects.create(name="c", container=rows.container, **span)
    assert notify.active_window(rows.host.pk, rows.container.key).name == "c"


# ---------------------------------------------------------------------------
# Permanent errors of the services themselves
# ---------------------------------------------------------------------------
def _fire_and_send(rows, channel):
    from alerts import evaluator

    make_rule("container_stopped", [channel], name=f"perm-{channel.name}")
    event = Event.objects.create(category="container", type="container.state", host=rows.host, container_key=rows.container.key,
                                 data={"state": "exited", "previous_state": "running", "exit_code": 1})
    evaluator.evaluate_event(event.pk)
    note = Notification.objects.get(channel=channel)
    return note, notify.send(note.pk)


@pytest.mark.django_db
def test_pushover_invalid_token_disables_the_channel(receiver, rows):
    receiver.script("/1/messages.json", [(400, {}, {"token": "invalid", "errors": ["application token is invalid"], "status": 0,
                                                  "request": "5042853c-402d-4a18-abcb-168734a801de"})])
    channel = make_channel("pushover", name="po-bad", user_key="u" * 30, app_token="a" * 30, base_url=receiver.url("/"))
    note, outcome = _fire_and_send(rows, channel)
    assert outcome == "failed"
    channel.refresh_from_db()
    assert not channel.enabled and "HTTP 400" in channel.disabled_reason and "application token is invalid" in channel.disabled_reason
    note.refresh_from_db()
    assert note.status == "failed" and note.attempts == 1
    # A 400 that is not about the keys (a message too long, say) does not disable the channel.
    receiver.script("/1/messages.json", [(400, {}, {"errors": ["message cannot be blank"], "status": 0})])
    other = make_channel("pushover", name="po-other", user_key="u" * 30, app_token="b" * 30, base_url=receiver.url("/"))
    result = notify.send_test(other)
    assert not result["ok"] and not result["permanent"]


@pytest.mark.django_db
def test_telegram_chat_not_found_disables_the_channel(receiver, rows):
    receiver.script("/bot123456:ABCdef/sendMessage", [(400, {}, {"ok": False, "error_code": 400,
                                                                "description": "Bad Request: chat not found"})])
    channel = make_channel("telegram", name="tg-bad", bot_token="123456:ABCdef", chat_id="-100999", base_url=receiver.url("/"))
    note, outcome = _fire_and_send(rows, channel)
    assert outcome == "failed"
    channel.refresh_from_db()
    assert not channel.enabled and "chat not found" in channel.disabled_reason
    assert "ABCdef" not in channel.disabled_reason
    assert Event.objects.filter(type="alert.channel_disabled", data__channel=channel.pk).count() == 1


@pytest.mark.django_db
def test_smtp_login_refused_disables_the_channel(smtp_auth_server, rows):
    channel = make_channel("email", name="mail-auth", host="127.0.0.1", port=smtp_auth_server.port, to="ops@example.test",
                           username="dockmon", password="wrong-password", from_address="dockmon@example.test")
    note, outcome = _fire_and_send(rows, channel)
    assert outcome == "failed"
    assert smtp_auth_server.handler_state.logins, "the client never tried to log in"
    assert smtp_auth_server.handler_state.messages == []
    channel.refresh_from_db()
    assert not channel.enabled and "refused the login (535)" in channel.disabled_reason
    assert DeliveryAttempt.objects.get(notification=note).status_code == 535


@pytest.mark.django_db
def test_429_retry_after_as_an_http_date(receiver, rows):
    import email.utils

    when = timezone.now().replace(microsecond=0) + timedelta(seconds=300)
    receiver.script("/busy-date", [(429, {"Retry-After": email.utils.format_datetime(when, usegmt=True)})])
    channel = make_channel("webhook", name="busy-date", url=receiver.url("/busy-date"))
    note, outcome = _fire_and_send(rows, channel)
    assert outcome == "pending"
    note.refresh_from_db()
    # Due at the date the service named (to the second it was given in), not after a backoff.
    assert abs((note.next_attempt_at - when).total_seconds()) <= 1
    assert "HTTP 429" in note.last_error
    assert notify.dispatch_due(inline=True) == 0


# ---------------------------------------------------------------------------
# The delivery log of an alert, history retention, a global window end to end
# ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_alert_notifications_endpoint_lists_each_message_with_its_attempts(receiver, rows, admin_client, settings):
    settings.DOCKMON_NOTIFY_BACKOFF_SECONDS = 0.01
    receiver.script("/log", [(503, {})])
    hook = make_channel("webhook", name="log-hook", url=receiver.url("/log"))
    slack = make_channel("slack", name="log-slack", webhook_url="/services/T1/B1/XYZ", base_url=receiver.url("/"))
    rule = make_rule("container_stopped", [hook, slack])
    from alerts import evaluator

    evaluator.evaluate_event(Event.objects.create(category="container", type="container.state", host=rows.host,
                                                  container_key=rows.container.key,
                                                  data={"state": "exited", "previous_state": "running", "exit_code": 2}).pk)
    alert = Alert.objects.get(rule=rule)
    notify.dispatch_due(inline=True)
    Notification.objects.filter(status="pending").update(next_attempt_at=timezone.now())
    notify.dispatch_due(inline=True)
    rows_ = admin_client.get(f"/api/v1/alerts/{alert.pk}/notifications/").json()
    assert [(n["channel_name"], n["event"], n["status"], n["attempts"]) for n in rows_] in (
        [("log-hook", "fired", "sent", 2), ("log-slack", "fired", "sent", 1)],
        [("log-slack", "fired", "sent", 1), ("log-hook", "fired", "sent", 2)],
    )
    by_channel = {n["channel_name"]: n for n in rows_}
    hook_row = by_channel["log-hook"]
    assert hook_row["alert"] == alert.pk and hook_row["channel"] == hook.pk and hook_row["sequence"] == 1
    assert hook_row["title"] == alert.title and "exit code 2" in hook_row["body"] and hook_row["sent_at"].endswith("Z")
    assert [(d["ok"], d["status_code"]) for d in hook_row["deliveries"]] == [(False, 503), (True, None)]
    assert "HTTP 503" in hook_row["deliveries"][0]["error"] and hook_row["deliveries"][1]["error"] == ""
    assert all(isinstance(d["duration_ms"], int) and d["ts"].endswith("Z") for d in hook_row["deliveries"])
    assert [(d["ok"], d["status_code"]) for d in by_channel["log-slack"]["deliveries"]] == [(True, None)]


@pytest.mark.django_db
def test_prune_history_drops_old_resolved_alerts_and_old_tests_only(rows, settings):
    from alerts.models import AlertHistory, AlertRule
    from alerts.tasks import prune_history

    settings.DOCKMON_ALERT_HISTORY_DAYS = 30
    rule = make_rule("container_stopped")
    hook = make_channel("webhook", name="prune", url="http://127.0.0.1:9/none")
    long_ago, lately = timezone.now() - timedelta(days=31), timezone.now() - timedelta(days=29)

    def alert(tag, state, resolved_at):
        row = Alert.objects.create(rule=rule, kind=rule.kind, dedup_key=f"{rule.pk}|k|container:{tag}", scope_type="container",
                                   scope_id=tag, host=rows.host, container=rows.container, state=state, resolved_at=resolved_at,
                                   first_seen_at=long_ago, last_seen_at=long_ago)
        AlertHistory.objects.create(alert=row, action="fired", ts=long_ago)
        Notification.objects.create(alert=row, channel=hook, event="fired", status="sent", created_at=long_ago)
        return row

    old = alert("old", "resolved", long_ago)
    recent = alert("recent", "resolved", lately)
    still_open = alert("open", "open", None)
    old_test = Notification.objects.create(channel=hook, event="test", status="sent", created_at=long_ago)
    new_test = Notification.objects.create(channel=hook, event="test", status="sent", created_at=lately)
    assert prune_history() == 2
    assert set(Alert.objects.values_list("pk", flat=True)) == {recent.pk, still_open.pk}
    assert not AlertHistory.objects.filter(alert_id=old.pk).exists()
    assert not Notification.objects.filter(alert_id=old.pk).exists()
    assert set(Notification.objects.filter(alert__isnull=True).values_list("pk", flat=True)) == {new_test.pk}
    assert old_test.pk not in Notification.objects.values_list("pk", flat=True)
    assert AlertRule.objects.filter(pk=rule.pk).exists() and prune_history() == 0


@pytest.mark.django_db(transaction=True)
def test_a_global_maintenance_window_holds_everything_and_sends_once_after(eager, receiver, rows, unique, admin_client):
    from alerts import tasks
    from containers.models import Container, DockerHost

    channel = make_channel("webhook", name="gbo", url=receiver.url("/gbo"))
    make_rule("container_stopped", [channel])
    make_rule("host_offline", [channel], name="offline")
    now = timezone.now()
    response = admin_client.post("/api/v1/maintenance-windows/", {
        "name": "everything", "recurrence": "once", "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=2)).isoformat()}, format="json")
    assert response.status_code == 201, response.json()
    window = response.json()
    assert window["host"] is None and window["container"] is None and window["active_now"] is True
    other_host = DockerHost.objects.create(name=f"gbo-{unique}", url="unix:///nonexistent-gbo.sock", status="online")
    elsewhere = Container.objects.create(host=other_host, container_id="9" * 64, short_id="9" * 12, name=f"far-{unique}",
                                         state="running")
    die(rows.container)
    die(elsewhere)
    from containers import bus

    bus.emit("host.status", category="host", host=other_host, data={"status": "offline", "previous": "online"})
    assert Alert.objects.filter(state="open").count() == 3
    assert set(Notification.objects.values_list("status", flat=True)) == {"held"}
    assert tasks.periodic()["released"] == 0 and receiver.requests == []

    # The window ends (its end moved to the past through the API); the periodic task sends each
    # still-open alert once, and nothing again on the next run.
    response = admin_client.patch(f"/api/v1/maintenance-windows/{window['id']}/",
                                  {"ends_at": (timezone.now() - timedelta(seconds=1)).isoformat()}, format="json")
    assert response.status_code == 200 and response.json()["active_now"] is False
    assert tasks.periodic()["released"] == 3
    assert tasks.periodic()["released"] == 0
    notify.dispatch_due(inline=True)
    sent = receiver.on("/gbo")
    assert len(sent) == 3 and {r["body"]["event"] for r in sent} == {"fired"}
    assert sorted(r["body"]["alert"]["kind"] for r in sent) == ["container_stopped", "container_stopped", "host_offline"]
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
