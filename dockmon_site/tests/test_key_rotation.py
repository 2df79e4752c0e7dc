"""Encryption keys rotate, and a secret no configured key opens breaks nothing but its own use.

Real parts: a TLS host on the testbed's TLS engine "beta", a plain host on "alpha", the
testbed's registry, `manage.py monitor` as a process; a local HTTP receiver stands in for a
webhook target and a checked service (nothing may reach it when the secret cannot be read).
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from alerts import notify
from alerts.models import NotificationChannel
from containers import services
from containers.models import Container, DockerHost
from containers.portable import has_tls
from dockmon_site import crypto
from healthchecks import services as health_services
from healthchecks.models import HealthCheck
from testkit.testing import wait_for
from updates.lookups import registry_credentials
from updates.models import RegistryCredential
from updates.registry import RegistryAuthError, RegistryClient, parse_reference

pytestmark = pytest.mark.trust

UNDECRYPTABLE = "stored TLS material cannot be decrypted: the encryption key changed; re-enter it"
HEADER_VALUE = "hdr-SECRET-4411"


def _stored(model, pk, column: str) -> str:
    """The column as the database holds it (no decryption)."""
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(model._meta.db_table)
        value = pk.hex if connection.vendor == "sqlite" and hasattr(pk, "hex") else pk
        cursor.execute(f"SELECT {connection.ops.quote_name(column)} FROM {table} WHERE {model._meta.pk.column} = %s", [value])
        return cursor.fetchone()[0]


def _secrets(receiver, host_for_checks: DockerHost, unique: str):
    """One of each kind of stored secret besides the host's TLS material."""
    registry = RegistryCredential.objects.create(registry=f"reg-{unique}.example:5000", username="u", password="reg-pass-1")
    channel = NotificationChannel(name=f"wh-{unique}", kind="webhook", config={})
    channel.set_secrets({"url": receiver.url("/hook"), "headers": {"X-Api-Key": HEADER_VALUE}})
    channel.save()
    container = Container.objects.create(host=host_for_checks, container_id=(unique * 8)[:64], short_id=(unique * 2)[:12],
                                         name=f"web-{unique}", state="running", image="demo/web:1")
    check = HealthCheck.objects.create(container=container, url=receiver.url("/health"), headers=json.dumps({"X-Api-Key": HEADER_VALUE}),
                                       basic_auth_user="probe", basic_auth_password="probe-pass-2")
    return registry, channel, check


def _rotate(*args) -> str:
    out = io.StringIO()
    call_command("rotate_keys", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_a_tls_host_and_every_secret_survive_a_rotation_and_the_old_key_being_dropped(settings, make_host, beta, receiver, unique):
    """GIVEN a TLS host on beta and stored secrets of every kind written under key-one
    WHEN key-two is put first, rotate_keys runs, and key-one is removed
    THEN the host connects at every step and every secret reads back the same."""
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-one"]
    host = make_host(beta, via="tls", name=f"tls-{unique}")
    plain_key = host.tls_key
    registry, channel, check = _secrets(receiver, host, unique)
    before = _stored(DockerHost, host.pk, "tls_key")
    assert before.startswith(crypto.PREFIX) and "PRIVATE KEY" not in before

    settings.DOCKMON_ENCRYPTION_KEYS = ["key-two", "key-one"]
    host = DockerHost.objects.get(pk=host.pk)
    assert host.tls_key == plain_key  # an older key still opens it
    assert services.test_host(host)["status"] == "online"
    assert not crypto.is_current(before)

    dry = _rotate("--dry-run")
    assert "containers.DockerHost.tls_key: 1 would re-encrypt" in dry
    assert _stored(DockerHost, host.pk, "tls_key") == before  # a dry run writes nothing

    report = _rotate()
    for label in ("containers.DockerHost.tls_key", "containers.DockerHost.tls_cert", "containers.DockerHost.tls_ca",
                  "updates.RegistryCredential.password", "alerts.NotificationChannel.secrets", "healthchecks.HealthCheck.headers",
                  "healthchecks.HealthCheck.basic_auth_password"):
        assert f"{label}: 1 re-encrypted" in report, report
    after = _stored(DockerHost, host.pk, "tls_key")
    assert after != before and crypto.is_current(after)

    settings.DOCKMON_ENCRYPTION_KEYS = ["key-two"]  # the old key is gone
    host = DockerHost.objects.get(pk=host.pk)
    assert host.tls_key == plain_key and not host.tls_undecryptable
    assert services.test_host(host)["status"] == "online"
    assert RegistryCredential.objects.get(pk=registry.pk).password == "reg-pass-1"
    assert NotificationChannel.objects.get(pk=channel.pk).secret_dict["headers"] == {"X-Api-Key": HEADER_VALUE}
    reread = HealthCheck.objects.get(pk=check.pk)
    assert reread.header_dict == {"X-Api-Key": HEADER_VALUE} and reread.basic_auth_password == "probe-pass-2"
    again = _rotate()
    assert "containers.DockerHost.tls_key: 0 re-encrypted, 0 plain text encrypted, 1 already current" in again


@pytest.mark.django_db(transaction=True)
def test_a_host_whose_tls_material_no_key_opens_is_marked_and_nothing_else_breaks(
        settings, make_host, alpha, beta, monitor, django_user_model, unique):
    """GIVEN a TLS host written under key-one, a plain host, and the keys changed to key-other
    THEN the host list (API, admin) answers 200 for the owner and a granted user, 404 for an outsider;
    the monitor marks the TLS host `error` with a clear message and keeps the plain host online;
    saving the host keeps its stored material, so putting key-one back brings it back."""
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-one"]
    tls_host = make_host(beta, via="tls", name=f"tls-{unique}")
    plain_host = make_host(alpha, name=f"plain-{unique}")
    stored = _stored(DockerHost, tls_host.pk, "tls_key")
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-other"]

    owner = django_user_model.objects.create_superuser(f"own{unique}", password="pw-owner-123")
    granted = django_user_model.objects.create_user(f"grant{unique}", password="pw-grant-123")
    outsider = django_user_model.objects.create_user(f"out{unique}", password="pw-out-1234")
    assign_perm("containers.view_dockerhost", granted, tls_host)

    loaded = DockerHost.objects.get(pk=tls_host.pk)
    assert crypto.is_undecryptable(loaded.tls_key) and loaded.tls_key == "" and loaded.uses_tls
    assert has_tls(loaded)  # a configuration export still says the host has TLS material

    process = monitor(DOCKMON_ENCRYPTION_KEYS="key-other")
    wait_for(lambda: DockerHost.objects.get(pk=tls_host.pk).status == "error"
             and DockerHost.objects.get(pk=plain_host.pk).status == "online", timeout=30, message="monitor statuses")
    assert process.alive(), process.log()
    assert DockerHost.objects.get(pk=tls_host.pk).last_error == UNDECRYPTABLE

    for user in (owner, granted):
        client = APIClient()
        client.force_authenticate(user)
        listing = client.get("/api/v1/hosts/")
        assert listing.status_code == 200
        rows = {row["id"]: row for row in listing.data["results"]}
        assert rows[str(tls_host.pk)]["status"] == "error" and rows[str(tls_host.pk)]["last_error"] == UNDECRYPTABLE
        assert rows[str(tls_host.pk)]["uses_tls"] is True and "tls_key" not in rows[str(tls_host.pk)]
        assert client.get(f"/api/v1/hosts/{tls_host.pk}/").status_code == 200
    stranger = APIClient()
    stranger.force_authenticate(outsider)
    assert stranger.get(f"/api/v1/hosts/{tls_host.pk}/").status_code == 404
    assert str(tls_host.pk) not in {row["id"] for row in stranger.get("/api/v1/hosts/").data["results"]}

    browser = Client()
    browser.force_login(owner)
    assert browser.get("/admin/containers/dockerhost/").status_code == 200
    assert browser.get(f"/admin/containers/dockerhost/{tls_host.pk}/change/").status_code == 200
    assert browser.get("/hosts/").status_code == 200

    # A connection test says the same, and a change to the host keeps the stored material.
    assert services.test_host(DockerHost.objects.get(pk=tls_host.pk))["error"] == UNDECRYPTABLE
    owner_api = APIClient()
    owner_api.force_authenticate(owner)
    assert owner_api.patch(f"/api/v1/hosts/{tls_host.pk}/", {"name": f"renamed-{unique}"}, format="json").status_code == 200
    assert _stored(DockerHost, tls_host.pk, "tls_key") == stored
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-other", "key-one"]
    assert services.test_host(DockerHost.objects.get(pk=tls_host.pk))["status"] == "online"


@pytest.mark.django_db
def test_rotate_keys_leaves_what_it_cannot_open_alone_says_so_and_marks_the_host(settings, make_host, beta, unique):
    settings.DOCKMON_ENCRYPTION_KEYS = ["lost-key"]
    host = make_host(beta, via="tls", name=f"tls-{unique}")
    stored = _stored(DockerHost, host.pk, "tls_key")
    settings.DOCKMON_ENCRYPTION_KEYS = ["old-key"]
    registry = RegistryCredential.objects.create(registry=f"reg-{unique}.example", username="u", password="reg-pass-3")
    channel = NotificationChannel.objects.create(name=f"legacy-{unique}", kind="webhook", config={})
    with connection.cursor() as cursor:  # a value written before encryption existed
        cursor.execute(f"UPDATE {NotificationChannel._meta.db_table} SET secrets = %s WHERE id = %s",
                       [json.dumps({"url": "http://127.0.0.1:9/legacy"}), channel.pk])

    settings.DOCKMON_ENCRYPTION_KEYS = ["new-key", "old-key"]
    out = io.StringIO()
    with pytest.raises(CommandError, match="cannot be decrypted with any configured key"):
        call_command("rotate_keys", stdout=out)
    report = out.getvalue()
    assert f"containers.DockerHost.tls_key: 0 re-encrypted, 0 plain text encrypted, 0 already current, 1 undecryptable (ids: {host.pk})" in report
    assert "updates.RegistryCredential.password: 1 re-encrypted" in report
    assert "alerts.NotificationChannel.secrets: 0 re-encrypted, 1 plain text encrypted" in report
    assert _stored(DockerHost, host.pk, "tls_key") == stored  # left as it was
    assert crypto.is_current(_stored(RegistryCredential, registry.pk, "password"))
    legacy = _stored(NotificationChannel, channel.pk, "secrets")
    assert crypto.is_current(legacy) and "legacy" not in legacy
    assert NotificationChannel.objects.get(pk=channel.pk).secret_dict == {"url": "http://127.0.0.1:9/legacy"}
    host.refresh_from_db()
    assert (host.status, host.last_error) == ("error", UNDECRYPTABLE)


@pytest.mark.django_db
def test_secrets_no_key_opens_fail_their_own_delivery_check_or_pull_with_a_clear_message(
        settings, make_host, alpha, testbed, receiver, django_user_model, unique):
    """GIVEN a webhook with a secret header, a health check with a header and a password, and
    registry credentials, all written under key-one; WHEN only key-other is configured
    THEN the test delivery, the check and the registry call fail saying the key changed, nothing
    reaches the receiver, and the lists of channels and checks still answer."""
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-one"]
    host = make_host(alpha, name=f"plain-{unique}")
    RegistryCredential.objects.create(registry=testbed.registry, username="u", password="reg-pass-4")
    _, channel, check = _secrets(receiver, host, unique)
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-other"]

    result = notify.send_test(NotificationChannel.objects.get(pk=channel.pk))
    assert result["ok"] is False and "cannot be decrypted: the encryption key changed" in result["error"], result
    _, probe = health_services.test_now(HealthCheck.objects.get(pk=check.pk))
    assert probe.ok is False
    assert "stored header values and basic-auth password cannot be decrypted: the encryption key changed" in probe.error
    with pytest.raises(RegistryAuthError, match="stored registry password cannot be decrypted"):
        RegistryClient(registry_credentials()).head_manifest(parse_reference(f"{testbed.registry}/demo/app:1.0"))
    assert receiver.requests == []  # nothing went out without (or with a wrong) secret

    admin = APIClient()
    admin.force_authenticate(django_user_model.objects.create_superuser(f"a{unique}", password="pw-admin-1234"))
    assert admin.get("/api/v1/notification-channels/").status_code == 200
    assert admin.get(f"/api/v1/notification-channels/{channel.pk}/").status_code == 200
    assert admin.get("/api/v1/health-checks/").status_code == 200
    assert admin.get("/api/v1/registry-credentials/").status_code == 200
    assert HealthCheck.objects.get(pk=check.pk).last_error.endswith("re-enter them")


def test_both_key_settings_at_once_are_refused(monkeypatch):
    import importlib

    from django.core.exceptions import ImproperlyConfigured

    import dockmon_site.settings as settings_module

    monkeypatch.setenv("DOCKMON_ENCRYPTION_KEY", "single")
    monkeypatch.setenv("DOCKMON_ENCRYPTION_KEYS", "new,old")
    try:
        with pytest.raises(ImproperlyConfigured, match="not both"):
            importlib.reload(settings_module)
    finally:
        monkeypatch.delenv("DOCKMON_ENCRYPTION_KEY")
        monkeypatch.delenv("DOCKMON_ENCRYPTION_KEYS")
        importlib.reload(settings_module)


def test_the_single_key_settings_keep_working_and_a_list_reads_values_of_any_of_its_keys(settings):
    settings.DOCKMON_ENCRYPTION_KEYS = []
    settings.DOCKMON_ENCRYPTION_KEY = ""
    from_secret_key = crypto.encrypt("payload")
    settings.DOCKMON_ENCRYPTION_KEY = "dedicated"
    assert crypto.key_materials() == ("dedicated",)
    dedicated = crypto.encrypt("payload")
    with pytest.raises(ValueError):
        crypto.decrypt(from_secret_key)
    settings.DOCKMON_ENCRYPTION_KEY = ""
    settings.DOCKMON_ENCRYPTION_KEYS = ["newest", "dedicated", settings.SECRET_KEY]
    assert crypto.decrypt(from_secret_key) == "payload" and crypto.decrypt(dedicated) == "payload"
    fresh = crypto.encrypt("payload")
    settings.DOCKMON_ENCRYPTION_KEYS = ["newest"]
    assert crypto.decrypt(fresh) == "payload"
    assert crypto.is_undecryptable(crypto.load(dedicated)) and crypto.load(dedicated) == ""


@pytest.mark.django_db
def test_a_secret_no_key_opens_is_dropped_when_its_destination_changes_so_the_old_key_cannot_revive_it(
        settings, make_host, alpha, receiver, unique):
    """GIVEN a health check with header and password, a gotify channel with its token, and a
    registry credential, all written under key-one; WHEN only key-other is configured and each is
    pointed elsewhere (as the admin and an import save them); THEN once key-one is back, none of
    them holds the old secret, and the re-pointed check sends nothing secret to its new target."""
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-one"]
    host = make_host(alpha, name=f"plain-{unique}")
    registry, _, check = _secrets(receiver, host, unique)
    gotify = NotificationChannel(name=f"go-{unique}", kind="gotify", config={"base_url": "http://127.0.0.1:9/"})
    gotify.set_secrets({"app_token": "tok-SECRET-77"})
    gotify.save()
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-other"]

    moved_check = HealthCheck.objects.get(pk=check.pk)
    assert crypto.is_undecryptable(moved_check.basic_auth_password)
    moved_check.url = receiver.url("/elsewhere", host="localhost")
    moved_check.save()
    moved_channel = NotificationChannel.objects.get(pk=gotify.pk)
    moved_channel.config = {"base_url": "http://127.0.0.1:10/"}
    moved_channel.save()
    moved_registry = RegistryCredential.objects.get(pk=registry.pk)
    moved_registry.registry = f"other-{unique}.example:5000"
    moved_registry.save()

    settings.DOCKMON_ENCRYPTION_KEYS = ["key-one"]
    check = HealthCheck.objects.get(pk=check.pk)
    assert (check.headers, check.basic_auth_password) == ("", "")
    channel = NotificationChannel.objects.get(pk=gotify.pk)
    assert channel.secret_dict == {} and channel.enabled is False
    assert RegistryCredential.objects.get(pk=registry.pk).password == ""
    _, probe = health_services.test_now(check)
    assert probe.ok is True, probe.error
    sent = receiver.requests[-1]["headers"]
    assert "X-Api-Key" not in sent
    # The user name stays (it is not a secret); the password went with the old destination.
    assert base64.b64decode(sent["Authorization"].split()[1]) == b"probe:"


@pytest.mark.django_db
def test_an_unmoved_secret_no_key_opens_survives_a_save_and_comes_back_with_its_key(settings, make_host, alpha, receiver, unique):
    """The other side of the rule above: saving a row whose destination did not change keeps the
    ciphertext, so restoring the old key brings the secret back."""
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-one"]
    host = make_host(alpha, name=f"plain-{unique}")
    _, _, check = _secrets(receiver, host, unique)
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-other"]
    renamed = HealthCheck.objects.get(pk=check.pk)
    renamed.name = f"renamed-{unique}"
    renamed.save()
    settings.DOCKMON_ENCRYPTION_KEYS = ["key-one"]
    assert HealthCheck.objects.get(pk=check.pk).basic_auth_password == "probe-pass-2"
