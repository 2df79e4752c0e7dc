"""Trust boundaries of notification channels: a secret follows its destination (API, admin,
config import), audit rows and exports never hold one, and who may touch a channel.

Local loopback receivers stand in for the services (alerts/tests/conftest.py); SMTP servers are
real (aiosmtpd)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from accounts.models import AuditEntry
from alerts import notify
from alerts.models import NotificationChannel
from alerts.tests.conftest import make_channel
from containers import config_io
from testkit.receivers import Receiver

pytestmark = [pytest.mark.trust, pytest.mark.django_db]

USER_KEY = "uKEYsecret0123456789abcdefghij"
APP_TOKEN = "aTOKENsecret0123456789abcdefgh"
NEW_TOKEN = "nTOKENsecret9876543210zyxwvuts"
NTFY_TOKEN = "tk_NTFYsecretAccessToken112233"
HEADER_VALUE = "HeaderSECRETvalue-4455"
SMTP_PASSWORD = "SmtpSECRETpassword-7788"


@pytest.fixture
def second_receiver():
    with Receiver() as server:
        yield server


def _everything_received(*receivers) -> str:
    return json.dumps([{**r, "raw": r["raw"].decode(errors="replace")} for server in receivers for r in server.requests])


def _grant(user, channel):
    for perm in ("view", "change"):
        assign_perm(f"alerts.{perm}_notificationchannel", user, channel)


# ---------------------------------------------------------------------------
# Secrets follow their destination: the API
# ---------------------------------------------------------------------------
def test_moving_a_channel_without_its_required_secrets_is_a_400_and_changes_nothing(people, receiver, second_receiver):
    """GIVEN a Pushover channel whose tokens go to one receiver
    WHEN an administrator points its base URL at another without giving the tokens again
    THEN 400 names the tokens, the channel still points where it did, and nothing reached the
    new receiver; given again in the same request, the new tokens (only) go to the new place."""
    channel = make_channel("pushover", name="po-move", user_key=USER_KEY, app_token=APP_TOKEN, base_url=receiver.url("/"))
    client = people.client("admin")
    url = f"/api/v1/notification-channels/{channel.pk}/"
    response = client.patch(url, {"config": {"base_url": second_receiver.url("/")}}, format="json")
    assert response.status_code == 400
    errors = response.json()["config"]
    assert set(errors) >= {"user_key", "app_token"} and "never sent to a new destination" in errors["app_token"]
    channel.refresh_from_db()
    assert channel.config["base_url"] == receiver.url("/") and channel.secret_dict["app_token"] == APP_TOKEN

    response = client.patch(url, {"config": {"base_url": second_receiver.url("/"), "user_key": USER_KEY, "app_token": NEW_TOKEN}},
                            format="json")
    assert response.status_code == 200, response.content
    assert notify.send_test(NotificationChannel.objects.get(pk=channel.pk))["ok"]
    assert receiver.requests == []
    sent = _everything_received(second_receiver)
    assert NEW_TOKEN in sent and APP_TOKEN not in sent


def test_an_optional_secret_is_dropped_when_the_channel_moves(people, receiver, second_receiver):
    """ntfy's access token is optional: moving the server drops it; the new server gets the
    message without any Authorization header."""
    channel = make_channel("ntfy", name="nt-move", topic="alerts", access_token=NTFY_TOKEN, base_url=receiver.url("/"))
    response = people.client("admin").patch(f"/api/v1/notification-channels/{channel.pk}/",
                                            {"config": {"topic": "alerts", "base_url": second_receiver.url("/")}}, format="json")
    assert response.status_code == 200 and response.json()["secret_fields_set"] == []
    channel = NotificationChannel.objects.get(pk=channel.pk)
    assert "access_token" not in channel.secret_dict
    assert notify.send_test(channel)["ok"]
    [request] = second_receiver.on("/alerts")
    assert "Authorization" not in request["headers"]
    assert NTFY_TOKEN not in _everything_received(receiver, second_receiver)


def test_renaming_or_retitling_a_channel_keeps_its_secrets(people, receiver):
    channel = make_channel("ntfy", name="nt-keep", topic="alerts", access_token=NTFY_TOKEN, base_url=receiver.url("/"))
    client = people.client("admin")
    url = f"/api/v1/notification-channels/{channel.pk}/"
    assert client.patch(url, {"name": "nt-kept"}, format="json").status_code == 200
    assert client.patch(url, {"config": {"topic": "other", "base_url": receiver.url("/")}}, format="json").status_code == 200
    assert NotificationChannel.objects.get(pk=channel.pk).secret_dict == {"access_token": NTFY_TOKEN}
    assert notify.send_test(NotificationChannel.objects.get(pk=channel.pk))["ok"]
    assert receiver.on("/other")[0]["headers"]["Authorization"] == f"Bearer {NTFY_TOKEN}"


def test_a_webhook_moved_to_another_url_never_sends_its_old_header_values(people, receiver, second_receiver):
    """GIVEN a webhook with a secret header
    WHEN its URL changes (the header not given again)
    THEN the header is dropped and the new URL never sees its value; given again in the same
    request (even unchanged), it is kept."""
    channel = make_channel("webhook", name="wh-move", url=receiver.url("/a"), headers={"X-Api-Key": HEADER_VALUE})
    client = people.client("admin")
    url = f"/api/v1/notification-channels/{channel.pk}/"
    response = client.patch(url, {"config": {"url": second_receiver.url("/b")}}, format="json")
    assert response.status_code == 200 and "header_names" not in response.json()["config"]
    assert notify.send_test(NotificationChannel.objects.get(pk=channel.pk))["ok"]
    assert second_receiver.on("/b") and HEADER_VALUE not in _everything_received(receiver, second_receiver)

    # Supplied again with the move: kept.
    channel = make_channel("webhook", name="wh-move-2", url=receiver.url("/c"), headers={"X-Api-Key": HEADER_VALUE})
    response = client.patch(f"/api/v1/notification-channels/{channel.pk}/",
                            {"config": {"url": second_receiver.url("/d"), "headers": {"X-Api-Key": HEADER_VALUE}}}, format="json")
    assert response.status_code == 200 and response.json()["config"]["header_names"] == ["X-Api-Key"]
    assert notify.send_test(NotificationChannel.objects.get(pk=channel.pk))["ok"]
    assert second_receiver.on("/d")[0]["headers"]["X-Api-Key"] == HEADER_VALUE


@pytest.fixture
def recording_smtp():
    """Real SMTP servers (aiosmtpd) that offer AUTH, record every login with its password and
    refuse it; mail without a login is refused too (auth required)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from testkit.testing import free_port

    started = []

    def start():
        logins = []

        def authenticator(server, session, envelope, mechanism, auth_data):
            logins.append((getattr(auth_data, "login", b"") or b"").decode() + ":" + (getattr(auth_data, "password", b"") or b"").decode())
            return AuthResult(success=False, handled=False)

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                return "250 OK"

        controller = Controller(Handler(), hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                                auth_require_tls=False, auth_required=True)
        controller.start()
        controller.logins = logins
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


def test_an_smtp_password_never_goes_to_a_new_port(people, recording_smtp):
    first, second = recording_smtp(), recording_smtp()
    channel = make_channel("email", name="mail-move", host="127.0.0.1", port=first.port, to="ops@example.test", username="dockmon",
                           password=SMTP_PASSWORD, from_address="dockmon@example.test")
    assert not notify.send_test(channel)["ok"]  # the first server refuses the login...
    assert f"dockmon:{SMTP_PASSWORD}" in first.logins  # ...but it was offered there
    response = people.client("admin").patch(f"/api/v1/notification-channels/{channel.pk}/", {"config": {
        "host": "127.0.0.1", "port": second.port, "to": "ops@example.test", "username": "dockmon",
        "from_address": "dockmon@example.test"}}, format="json")
    assert response.status_code == 200 and response.json()["secret_fields_set"] == []
    assert not notify.send_test(NotificationChannel.objects.get(pk=channel.pk))["ok"]
    assert second.logins == [], "the stored password reached the new server"


# ---------------------------------------------------------------------------
# The model rule: admin and config import
# ---------------------------------------------------------------------------
def test_the_admin_moving_a_channel_drops_its_secrets_and_disables_it(people, receiver, second_receiver):
    """The admin form never shows secrets: changing the base URL there drops them, and the
    channel (missing required tokens now) is disabled with the reason."""
    channel = make_channel("pushover", name="po-admin", user_key=USER_KEY, app_token=APP_TOKEN, base_url=receiver.url("/"))
    client = Client()
    client.force_login(people.admin)
    response = client.post(f"/admin/alerts/notificationchannel/{channel.pk}/change/", {
        "name": "po-admin", "kind": "pushover", "config": json.dumps({"base_url": second_receiver.url("/")}), "enabled": "on",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = NotificationChannel.objects.get(pk=channel.pk)
    assert channel.config["base_url"] == second_receiver.url("/") and channel.secret_dict == {}
    assert not channel.enabled and "enter" in channel.disabled_reason
    notify.send_test(channel)
    assert USER_KEY not in _everything_received(second_receiver) and APP_TOKEN not in _everything_received(second_receiver)
    rows = json.dumps(list(AuditEntry.objects.values("changes", "object_repr", "path")))
    assert USER_KEY not in rows and APP_TOKEN not in rows


def test_the_model_rule_keeps_secrets_when_nothing_moved_and_when_supplied(receiver, second_receiver):
    channel = make_channel("webhook", name="wh-model", url=receiver.url("/a"), headers={"X-Api-Key": HEADER_VALUE})
    channel = NotificationChannel.objects.get(pk=channel.pk)
    channel.name = "wh-model-renamed"
    channel.save()
    assert NotificationChannel.objects.get(pk=channel.pk).secret_dict["headers"] == {"X-Api-Key": HEADER_VALUE}
    channel = NotificationChannel.objects.get(pk=channel.pk)
    channel.set_secrets({**channel.secret_dict, "url": second_receiver.url("/b")})
    channel.supplied_secrets = frozenset({"headers"})
    channel.save()
    assert NotificationChannel.objects.get(pk=channel.pk).secret_dict["headers"] == {"X-Api-Key": HEADER_VALUE}
    channel = NotificationChannel.objects.get(pk=channel.pk)
    channel.set_secrets({**channel.secret_dict, "url": receiver.url("/c")})
    channel.save(update_fields=["secrets"])
    assert "headers" not in NotificationChannel.objects.get(pk=channel.pk).secret_dict


def test_an_import_that_moves_a_channel_drops_its_secrets(receiver, second_receiver):
    """GIVEN an exported configuration whose Gotify channel is then pointed elsewhere in the file
    WHEN it is imported over the channel
    THEN the stored token is dropped (and the channel disabled, as the report says)."""
    channel = make_channel("gotify", name="go-import", app_token=APP_TOKEN, base_url=receiver.url("/"))
    doc = config_io.export_config()
    [item] = [c for c in doc["notification_channels"] if c["name"] == "go-import"]
    assert APP_TOKEN not in json.dumps(doc)
    item["config"]["base_url"] = second_receiver.url("/")
    report = config_io.import_config(doc)
    channel = NotificationChannel.objects.get(pk=channel.pk)
    assert channel.secret_dict == {} and not channel.enabled
    notes = [n for i in report["items"] if i.get("ref") == "go-import" for n in i.get("notes", [])]
    assert any("dropped" in n for n in notes) and any("app_token" in n for n in notes), report["items"]
    notify.send_test(channel)
    assert APP_TOKEN not in _everything_received(receiver, second_receiver)


# ---------------------------------------------------------------------------
# Audit rows and exports
# ---------------------------------------------------------------------------
def test_audit_rows_hold_no_channel_secret_even_for_a_refused_request(people):
    client = people.client("admin")
    secret_url = "https://hooks.example.test/services/T000/B000/UrlSECRETtoken7788"
    good = {"name": "wh-audit", "kind": "webhook", "config": {"url": secret_url, "headers": {"X-Api-Key": HEADER_VALUE}}}
    assert client.post("/api/v1/notification-channels/", good, format="json").status_code == 201
    bad = {"name": "wh-audit-bad", "kind": "webhook", "config": {"url": "ftp://x/UrlSECRETtoken7788", "headers": {"X-Api-Key": HEADER_VALUE}}}
    assert client.post("/api/v1/notification-channels/", bad, format="json").status_code == 400
    bad_kind = {"name": "po-audit-bad", "kind": "nope", "config": {"user_key": USER_KEY, "app_token": APP_TOKEN}}
    assert client.post("/api/v1/notification-channels/", bad_kind, format="json").status_code == 400
    rows = list(AuditEntry.objects.filter(path__startswith="/api/v1/notification-channels/").values("changes", "status_code"))
    assert sorted(r["status_code"] for r in rows) == [201, 400, 400]
    text = json.dumps(rows)
    for secret in (HEADER_VALUE, "UrlSECRETtoken7788", USER_KEY, APP_TOKEN):
        assert secret not in text
    assert "X-Api-Key" in text  # the header's name says what was set


def test_exports_hold_no_channel_secret(people, receiver):
    make_channel("webhook", name="wh-export", url=receiver.url("/UrlSECRETtoken7788"), headers={"X-Api-Key": HEADER_VALUE})
    make_channel("email", name="mail-export", host="127.0.0.1", port=25, to="a@b.test", username="u", password=SMTP_PASSWORD)
    response = people.client("admin").get("/api/v1/config/export/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "wh-export" in text and "mail-export" in text
    for secret in (HEADER_VALUE, "UrlSECRETtoken7788", SMTP_PASSWORD):
        assert secret not in text


# ---------------------------------------------------------------------------
# Who may touch a channel
# ---------------------------------------------------------------------------
def test_an_outsider_gets_404_for_every_channel_operation(people, receiver):
    channel = make_channel("webhook", name="wh-perm", url=receiver.url("/p"), headers={"X-Api-Key": HEADER_VALUE})
    client = people.client("outsider")
    url = f"/api/v1/notification-channels/{channel.pk}/"
    assert client.get(url).status_code == 404
    assert client.patch(url, {"config": {"url": receiver.url("/stolen")}}, format="json").status_code == 404
    assert client.put(url, {"name": "x", "kind": "webhook", "config": {"url": receiver.url("/stolen")}}, format="json").status_code == 404
    assert client.post(f"{url}test/").status_code == 404
    assert client.delete(url).status_code == 404
    assert client.post("/api/v1/notification-channels/", {"name": "mine", "kind": "webhook", "config": {"url": receiver.url("/m")}},
                       format="json").status_code == 403
    assert receiver.requests == [] and NotificationChannel.objects.get(pk=channel.pk).secret_dict["url"] == receiver.url("/p")


def test_a_user_granted_one_channel_reaches_only_that_one(people, receiver):
    mine = make_channel("ntfy", name="nt-mine", topic="mine", base_url=receiver.url("/"))
    other = make_channel("ntfy", name="nt-other", topic="other", base_url=receiver.url("/"), access_token=NTFY_TOKEN)
    _grant(people.granted, mine)
    client = people.client("granted")
    assert client.patch(f"/api/v1/notification-channels/{mine.pk}/", {"name": "nt-mine-2"}, format="json").status_code == 200
    assert client.post(f"/api/v1/notification-channels/{mine.pk}/test/").json()["ok"]
    assert client.get(f"/api/v1/notification-channels/{other.pk}/").status_code == 404
    assert client.patch(f"/api/v1/notification-channels/{other.pk}/", {"name": "x"}, format="json").status_code == 404
    assert client.post(f"/api/v1/notification-channels/{other.pk}/test/").status_code == 404
    assert client.delete(f"/api/v1/notification-channels/{mine.pk}/").status_code == 403


# ---------------------------------------------------------------------------
# The outbound policy: who may choose a destination, what it may be, and at send time
# ---------------------------------------------------------------------------
def test_only_an_administrator_chooses_where_a_channel_sends(people, receiver, second_receiver):
    """GIVEN a user granted change on a channel (and the model permission to add channels)
    WHEN they point it (or a new channel) at a URL or an SMTP host
    THEN 400 on that field; renaming it, changing a plain setting or creating a channel on the
    service's default server is fine; an administrator may point it."""
    from django.contrib.auth.models import Permission

    channel = make_channel("ntfy", name="nt-admin-only", topic="t", base_url=receiver.url("/"))
    _grant(people.granted, channel)
    people.granted.user_permissions.add(Permission.objects.get(codename="add_notificationchannel"))
    client = people.client("granted")
    url = f"/api/v1/notification-channels/{channel.pk}/"
    response = client.patch(url, {"config": {"topic": "t", "base_url": second_receiver.url("/")}}, format="json")
    assert response.status_code == 400 and "Only an administrator" in response.json()["config"]["base_url"]
    response = client.patch(url, {"config": {"topic": "https://ntfy.example.test/t"}}, format="json")
    assert response.status_code == 400 and "topic" in response.json()["config"]
    assert client.patch(url, {"config": {"topic": "other", "base_url": receiver.url("/")}}, format="json").status_code == 200
    for body in ({"name": "g-hook", "kind": "webhook", "config": {"url": receiver.url("/x")}},
                 {"name": "g-mail", "kind": "email", "config": {"to": "a@b.test", "host": "127.0.0.1", "port": 2525}},
                 {"name": "g-apprise", "kind": "apprise", "config": {"url": f"json://127.0.0.1:{receiver.port}/a"}}):
        response = client.post("/api/v1/notification-channels/", body, format="json")
        assert response.status_code == 400 and "Only an administrator" in json.dumps(response.json()), body
    assert client.post("/api/v1/notification-channels/", {"name": "g-default", "kind": "ntfy", "config": {"topic": "x"}},
                       format="json").status_code == 201
    assert people.client("admin").patch(url, {"config": {"topic": "t", "base_url": second_receiver.url("/")}},
                                        format="json").status_code == 200
    assert receiver.requests == [] and second_receiver.requests == []


@pytest.mark.parametrize("kind,config,field", [
    ("webhook", {"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
    ("webhook", {"url": "http://[fe80::1]:8080/hook"}, "url"),
    ("webhook", {"url": "http://127.0.0.1:2375/containers/x/kill"}, "url"),
    ("webhook", {"url": "http://metadata.google.internal/computeMetadata/v1/"}, "url"),
    ("slack", {"webhook_url": "http://224.0.0.1/services/x"}, "webhook_url"),
    ("gotify", {"app_token": "t", "base_url": "http://127.0.0.1:2376/"}, "base_url"),
    ("email", {"to": "a@b.test", "host": "169.254.169.254", "port": 25}, "host"),
    ("email", {"to": "a@b.test", "host": "127.0.0.1", "port": 2375}, "host"),
    ("apprise", {"url": "json://169.254.169.254/x"}, "url"),
    ("apprise", {"url": "form://127.0.0.1:2376/x"}, "url"),
    ("apprise", {"url": "mailto://u:p@example.test?smtp=169.254.169.254:25&to=a@b.test"}, "url"),
])
def test_a_destination_the_policy_refuses_is_a_400_on_its_field(people, kind, config, field):
    response = people.client("admin").post("/api/v1/notification-channels/", {"name": f"bad-{kind}", "kind": kind, "config": config},
                                           format="json")
    assert response.status_code == 400, response.content
    assert "Refused" in response.json()["config"][field]
    assert not NotificationChannel.objects.filter(name=f"bad-{kind}").exists()


def test_a_channel_aimed_at_a_registered_engine_is_refused_and_the_container_keeps_running(
        people, testbed, alpha, make_host, run_container, unique):
    """GIVEN a plain-TCP engine registered as a host and a container running on it
    WHEN an administrator aims a webhook at the engine's kill URL, and a channel stored before
    the policy (straight in the database) is sent
    THEN the save is a 400, the delivery is refused and disables the channel, and the container
    still runs."""
    make_host(alpha, via="tcp")
    cid = run_container(alpha, f"trust-kill-{unique}")
    kill = f"http://127.0.0.1:{alpha.tcp_url.rsplit(':', 1)[1]}/containers/{cid}/kill"
    response = people.client("admin").post("/api/v1/notification-channels/", {"name": "kill", "kind": "webhook", "config": {"url": kill}},
                                           format="json")
    assert response.status_code == 400 and "registered Docker engine" in response.json()["config"]["url"]
    stored = make_channel("webhook", name="kill-stored", url=kill)
    result = notify.send_test(stored)
    assert result["ok"] is False and result["permanent"] and "registered Docker engine" in result["error"]
    assert cid not in result["error"]
    assert alpha.inspect(cid)["State"]["Running"] is True


def test_every_transport_refuses_at_send_time_a_destination_that_became_an_engine(people, receiver, smtp_server, unique):
    """GIVEN channels that worked (a webhook, ntfy, email, apprise's json://)
    WHEN their server's address:port is then registered as a Docker engine
    THEN each delivery is refused before anything is sent, permanently."""
    from containers.models import DockerHost

    webhook = make_channel("webhook", name="rt-hook", url=receiver.url("/h"))
    ntfy = make_channel("ntfy", name="rt-ntfy", topic="t", base_url=receiver.url("/"))
    apprise = make_channel("apprise", name="rt-apprise", url=f"json://127.0.0.1:{receiver.port}/a")
    mail = make_channel("email", name="rt-mail", host="127.0.0.1", port=smtp_server.port, to="ops@example.test")
    for channel in (webhook, ntfy, apprise, mail):
        assert notify.send_test(channel)["ok"], channel.name
    sent, mails = len(receiver.requests), len(smtp_server.messages)
    DockerHost.objects.create(name=f"rt-engine-{unique}", url=f"tcp://127.0.0.1:{receiver.port}")
    DockerHost.objects.create(name=f"rt-smtp-engine-{unique}", url=f"tcp://127.0.0.1:{smtp_server.port}")
    for channel in (webhook, ntfy, apprise, mail):
        result = notify.send_test(NotificationChannel.objects.get(pk=channel.pk))
        assert result["ok"] is False and result["permanent"] and "registered Docker engine" in result["error"], (channel.name, result)
    assert len(receiver.requests) == sent and len(smtp_server.messages) == mails


def test_a_service_that_redirects_or_answers_a_huge_body_gets_no_second_request(people, receiver, second_receiver):
    receiver.script("/moved", [(302, {"Location": second_receiver.url("/elsewhere")})])
    channel = make_channel("webhook", name="rt-redirect", url=receiver.url("/moved"), headers={"X-Api-Key": HEADER_VALUE})
    result = notify.send_test(channel)
    assert result["ok"] is False and "redirects are not followed" in result["error"]
    assert second_receiver.requests == []
    receiver.script("/huge", [(500, {}, b"x" * (5 * 1024 * 1024))])
    channel = make_channel("webhook", name="rt-huge", url=receiver.url("/huge"))
    result = notify.send_test(channel)
    assert result["ok"] is False and "HTTP 500" in result["error"] and len(result["error"]) < 1000


def test_the_admin_form_and_a_config_import_apply_the_policy_too(people, receiver):
    channel = make_channel("gotify", name="go-form", app_token=APP_TOKEN, base_url=receiver.url("/"))
    client = Client()
    client.force_login(people.admin)
    response = client.post(f"/admin/alerts/notificationchannel/{channel.pk}/change/", {
        "name": "go-form", "kind": "gotify", "config": json.dumps({"base_url": "http://169.254.169.254/"}), "enabled": "on",
    })
    assert response.status_code == 200 and "link-local" in response.content.decode()
    channel = NotificationChannel.objects.get(pk=channel.pk)
    assert channel.config["base_url"] == receiver.url("/") and channel.secret_dict == {"app_token": APP_TOKEN}

    doc = config_io.export_config()
    [item] = [c for c in doc["notification_channels"] if c["name"] == "go-form"]
    item["config"]["base_url"] = "http://127.0.0.1:2375/"
    with pytest.raises(config_io.ConfigError) as caught:
        config_io.import_config(doc)
    assert "2375" in json.dumps(caught.value.errors)
    assert NotificationChannel.objects.get(pk=channel.pk).secret_dict == {"app_token": APP_TOKEN}


def test_the_test_answer_to_a_non_administrator_holds_the_status_not_the_body(people, receiver):
    receiver.script("/refuses", [(400, {}, {"error": "internal detail 5566 from the service"})] * 2)
    channel = make_channel("webhook", name="wh-body", url=receiver.url("/refuses"))
    _grant(people.granted, channel)
    granted = people.client("granted").post(f"/api/v1/notification-channels/{channel.pk}/test/").json()
    assert granted["ok"] is False and granted["status_code"] == 400 and "status 400" in granted["error"]
    assert "5566" not in json.dumps(granted)
    admin = people.client("admin").post(f"/api/v1/notification-channels/{channel.pk}/test/").json()
    assert admin["ok"] is False and "5566" in admin["error"]


def test_change_errors_tell_a_form_who_may_move_a_channel(people, receiver, second_receiver):
    """The helper the admin form can call: a moved destination needs an administrator."""
    from alerts import destinations

    channel = NotificationChannel.objects.get(pk=make_channel("ntfy", name="nt-form", topic="t", base_url=receiver.url("/")).pk)
    assert destinations.change_errors(channel, people.granted) == {}
    channel.config = {**channel.config, "base_url": second_receiver.url("/")}
    assert "Only an administrator" in destinations.change_errors(channel, people.granted)["base_url"]
    assert destinations.change_errors(channel, people.admin) == {}
    channel.config = {**channel.config, "base_url": "http://169.254.169.254/"}
    assert "Refused" in destinations.change_errors(channel, people.admin)["base_url"]
