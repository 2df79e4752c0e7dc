"""Channel secrets never come back in an error: a Telegram bot token, a Discord webhook path, a
webhook's secret header and URL token, an Apprise URL's password. Deliveries to a closed
loopback port (requests puts the whole URL in its exception text) and to a service that echoes
the request path in its error body; then every surface that shows errors is searched."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from alerts import evaluator, notify
from alerts.models import Alert, DeliveryAttempt, Notification, NotificationChannel
from alerts.transports.base import connection_reason, scrub, secret_values, strip_urls
from containers.models import Event
from testkit.receivers import LoopbackServer
from testkit.testing import free_port

TELEGRAM_TOKEN = "987654321:AAtelegramSECRETtokenValue0123"
DISCORD_PATH = "/api/webhooks/112233445566/DiscordSECRETwebhookTOKEN0987"
HEADER_SECRET = "HeaderSECRETvalue4455"
URL_TOKEN = "UrlSECRETtoken7788"
APPRISE_PASSWORD = "AppriseSECRETpass9911"
SECRETS = (TELEGRAM_TOKEN, "AAtelegramSECRETtokenValue0123", "DiscordSECRETwebhookTOKEN0987", HEADER_SECRET, URL_TOKEN,
           APPRISE_PASSWORD)


def _not_found(request):
    """A service that answers 404 and names the path it was asked for (some do)."""
    payload = json.dumps({"ok": False, "description": f"Not Found: no such path {request['path']}"}).encode()
    return 404, {"Content-Type": "application/json"}, payload


@pytest.fixture
def echo_404():
    with LoopbackServer(_not_found) as server:
        yield server.url("")


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {where}"


@pytest.mark.django_db
def test_no_secret_reaches_any_surface_after_failed_deliveries(rows, django_user_model, echo_404, settings):
    settings.DOCKMON_NOTIFY_MAX_ATTEMPTS = 5
    closed = f"http://127.0.0.1:{free_port()}"
    admin = django_user_model.objects.create_superuser("sec-admin", password="pw-sec-admin-1")
    api = APIClient()
    api.force_authenticate(admin)
    bodies = [
        {"name": "tg-closed", "kind": "telegram", "config": {"bot_token": TELEGRAM_TOKEN, "chat_id": "42", "base_url": closed}},
        {"name": "tg-echo", "kind": "telegram", "config": {"bot_token": TELEGRAM_TOKEN, "chat_id": "43", "base_url": echo_404}},
        {"name": "discord-closed", "kind": "discord",
         "config": {"webhook_url": f"https://discord.com{DISCORD_PATH}", "base_url": closed}},
        {"name": "hook-closed", "kind": "webhook",
         "config": {"url": f"{closed}/hook?token={URL_TOKEN}", "headers": {"X-Api-Key": HEADER_SECRET}}},
        {"name": "apprise-closed", "kind": "apprise",
         "config": {"url": f"json://dockmon:{APPRISE_PASSWORD}@127.0.0.1:{closed.rsplit(':', 1)[1]}/apprise"}},
    ]
    ids = {}
    for body in bodies:
        response = api.post("/api/v1/notification-channels/", body, format="json")
        assert response.status_code == 201, response.json()
        ids[body["name"]] = response.json()["id"]

    # Each channel's test/ answer: failed, with a reason that names the origin but no secret.
    for name, pk in ids.items():
        response = api.post(f"/api/v1/notification-channels/{pk}/test/")
        assert response.status_code == 200
        result = response.json()
        assert result["ok"] is False, (name, result)
        _assert_clean(json.dumps(result), f"test/ of {name}")
        if name in ("tg-closed", "discord-closed", "hook-closed"):
            assert closed in result["error"] and "ConnectionFailed: Connection refused" in result["error"], result["error"]
    # A real alert, delivered (and failed) through every channel.
    rule_body = {"name": "sec", "kind": "container_stopped", "channels": list(ids.values()), "cooldown_seconds": 0}
    assert api.post("/api/v1/alert-rules/", rule_body, format="json").status_code == 201
    event = Event.objects.create(category="container", type="container.state", host=rows.host, container_key=rows.container.key,
                                 data={"state": "exited", "previous_state": "running", "exit_code": 1})
    evaluator.evaluate_event(event.pk)
    alert = Alert.objects.get()
    assert notify.dispatch_due(inline=True) == len(ids)
    assert Notification.objects.filter(alert=alert).count() == len(ids)
    assert DeliveryAttempt.objects.filter(notification__alert=alert, ok=False).count() == len(ids)
    # The service that echoed the path gave a 404: the channel is disabled, with a clean reason.
    echo = NotificationChannel.objects.get(pk=ids["tg-echo"])
    assert not echo.enabled and "HTTP 404" in echo.disabled_reason and "bot***" in echo.disabled_reason
    stored = [
        *NotificationChannel.objects.values_list("last_error", "disabled_reason"),
        *Notification.objects.values_list("last_error", "body"),
        *DeliveryAttempt.objects.values_list("error", flat=False),
        *Event.objects.values_list("message", "data"),
    ]
    assert any(closed in str(row) for row in stored)
    _assert_clean(json.dumps(stored, default=str), "the database rows")

    surfaces = {
        "channel list": api.get("/api/v1/notification-channels/"),
        "alert notifications": api.get(f"/api/v1/alerts/{alert.pk}/notifications/"),
        "events": api.get("/api/v1/events/?category=alert"),
        **{f"channel {name}": api.get(f"/api/v1/notification-channels/{pk}/") for name, pk in ids.items()},
    }
    for where, response in surfaces.items():
        assert response.status_code == 200, where
        _assert_clean(response.content.decode(), where)
    assert "HTTP 404" in surfaces["channel tg-echo"].json()["disabled_reason"]
    assert any(d["error"] for n in surfaces["alert notifications"].json() for d in n["deliveries"])

    browser = Client()
    browser.force_login(admin)
    pages = ["/alerts/channels/", "/admin/alerts/notification/", "/admin/alerts/deliveryattempt/",
             *(f"/admin/alerts/notificationchannel/{pk}/change/" for pk in ids.values()),
             *(f"/admin/alerts/notification/{n}/change/" for n in Notification.objects.values_list("pk", flat=True))]
    for url in pages:
        response = browser.get(url)
        assert response.status_code == 200, url
        _assert_clean(response.content.decode(), url)
    page = browser.get("/alerts/channels/").content.decode()
    assert "cannot connect to" in page and "HTTP 404" in page


def test_the_scrubbing_helpers():
    text = ("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: /bot123456:SECRET/sendMessage "
            "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a new "
            "connection: [Errno 111] Connection refused')) https://user:pw@hooks.example.test:8443/services/T1/B2/X3?key=abc "
            "tgram://123456:SECRET/42")
    cleaned = strip_urls(text)
    assert "SECRET" not in cleaned and "/services/" not in cleaned and "pw@" not in cleaned and "key=abc" not in cleaned
    assert "https://hooks.example.test:8443" in cleaned and "tgram://***" in cleaned

    class Refused(Exception):
        pass

    assert connection_reason(Refused(text)) == "Refused: [Errno 111] Connection refused"
    values = secret_values({"url": "http://127.0.0.1:1/hook/ab12cd?token=tok123", "headers": {"X-Key": "hv-9988"}},
                           ("url", "headers"))
    assert {"tok123", "hv-9988", "ab12cd", "token=tok123"} <= set(values) and "hook" not in values
    assert scrub("sent tok123 and hv-9988 to http://127.0.0.1:1/hook/ab12cd", values) == "sent *** and *** to http://127.0.0.1:1"
