"""Configuration export and import (containers/config_io.py and each app's portable.py).

Real database, real engines: the containers the settings belong to run on the testbed's
engines, and an import finds them by host and name through the monitor's own reconcile path.
"""

from __future__ import annotations

import json
from datetime import time, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import APIToken, AuditEntry
from alerts.models import AlertRule, MaintenanceWindow, NotificationChannel
from containers import config_io
from containers.models import Container, ContainerTag, DockerHost, Event, Tag
from healthchecks.models import AutoRestartConfig, HealthCheck
from updates.models import AutoUpdate, ContainerUpdate, PolicyCategory, RegistryCredential, UpdatePolicy

# Every secret the world below stores: none may appear in an export.
SECRETS = {
    "registry_password": "reg-pass-5b2f9c11e0",
    "slack_webhook": "https://hooks.example.invalid/services/T000/B000/slacksecret7781",
    "webhook_url": "http://127.0.0.1:9/hook/webhooksecret4410",
    "webhook_header": "Bearer hdrsecret99af31",
    "ntfy_token": "tk_ntfysecret0c77d",
    "check_header": "chk-hdr-secret-3e1d",
    "check_password": "chk-basic-secret-81aa",
}
CONFIG_MODELS = (DockerHost, Tag, ContainerTag, RegistryCredential, PolicyCategory, UpdatePolicy, AutoUpdate, ContainerUpdate,
                 HealthCheck, AutoRestartConfig, NotificationChannel, AlertRule, MaintenanceWindow, Container)


def _sleeper(run_container, engine, name, extra=()):
    # trap: busybox sleep as PID 1 ignores SIGTERM (testbed notes); rm -f kills anyway.
    return run_container(engine, name, "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done", extra=tuple(extra))


def _without_time(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "exported_at"}


def _row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in CONFIG_MODELS}


def _client_for(user, *, read_only: bool = False) -> APIClient:
    client = APIClient()
    _, raw = APIToken.issue(user, name="config", read_only=read_only)
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def _flush() -> None:
    """A fresh DockMon: every table emptied (as pytest-django does after a transactional test)."""
    call_command("flush", interactive=False, verbosity=0)
    assert DockerHost.objects.count() == 0 and PolicyCategory.objects.count() == 0


def _results(report: dict, kind: str) -> dict[str, dict]:
    return {item["ref"]: item for item in report["items"] if item["kind"] == kind}


def _changes(report: dict) -> int:
    return sum(numbers["created"] + numbers["updated"] for numbers in report["summary"].values())


def _seed_categories() -> None:
    """The data migration's categories: an earlier transactional test may have flushed them."""
    import importlib

    seed = importlib.import_module("updates.migrations.0002_seed_policy_categories")
    PolicyCategory.objects.filter(builtin=True).delete()
    for item in seed.CATEGORIES:
        PolicyCategory.objects.create(**item, builtin=True)


def _sans_secret_marks(doc: dict, had_secrets: set[tuple[str, str]]) -> dict:
    """A document without what only secrets decide: the marks of which secrets an object had,
    and the switch of objects that had some (an import without them turns those off)."""
    marks = {"has_password", "header_names", "has_basic_auth_password", "secrets_needed"}
    out = {}
    for section, value in _without_time(doc).items():
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            out[section] = value
            continue
        items = []
        for item in value:
            item = {k: v for k, v in item.items() if k not in marks}
            if (section, item.get("name") or item.get("registry")) in had_secrets:
                item.pop("enabled", None)
            items.append(item)
        out[section] = items
    return out


def _with_secrets(doc: dict) -> set[tuple[str, str]]:
    found = set()
    for item in doc["notification_channels"]:
        if item["secrets_needed"]:
            found.add(("notification_channels", item["name"]))
    for item in doc["health_checks"]:
        if item["header_names"] or item["has_basic_auth_password"]:
            found.add(("health_checks", item["name"]))
    for item in doc["registry_credentials"]:
        if item["has_password"]:
            found.add(("registry_credentials", item["registry"]))
    return found


@pytest.fixture
def configured(transactional_db, alpha, beta, unique, run_container, sync_container, make_host):
    """Something of every kind of configuration, on containers running on two real engines."""
    _seed_categories()
    host_a = make_host(alpha, name=f"cfg-alpha-{unique}")
    host_b = make_host(beta, name=f"cfg-beta-{unique}")  # beta over its unix socket: no TLS material
    names = {"web": f"cfgweb{unique}", "db": f"cfgdb{unique}", "api": f"cfgapi{unique}"}
    web = sync_container(host_a, _sleeper(run_container, alpha, names["web"]))
    db = sync_container(host_a, _sleeper(run_container, alpha, names["db"]))
    # A compose service: its compose tag comes from the engine's labels, its user tag from a person.
    compose = ("--label", f"com.docker.compose.project=cfgproj{unique}", "--label", "com.docker.compose.service=api")
    api = sync_container(host_b, _sleeper(run_container, beta, names["api"], extra=compose))
    assert api.tag_links.get().tag.name == f"compose:cfgproj{unique}"
    ContainerTag.objects.create(container=api, tag=Tag.objects.create(name=f"backend-{unique}"))

    prod = Tag.objects.create(name=f"prod-{unique}", color="#ff0000")
    Tag.objects.create(name=f"unused-{unique}", color="")
    ContainerTag.objects.create(container=web, tag=prod)
    ContainerTag.objects.create(container=web, tag=Tag.objects.create(name=f"front-{unique}"))
    Container.objects.filter(pk=db.pk).update(desired_state="stopped")
    UpdatePolicy.objects.create(container=web, policy="warn", note="pinned by ops")
    AutoUpdate.objects.create(container=db, enabled=True, days=[5, 6], start=time(2, 0), end=time(4, 30), timezone="Europe/Berlin")
    ContainerUpdate.objects.create(container=web, image=web.image, tracking_mode="minor", include_prerelease=True)
    PolicyCategory.objects.filter(name="proxies").update(enabled=True, policy="block", patterns=["traefik", f"edge{unique}"])
    PolicyCategory.objects.create(name=f"mine-{unique}", label="Mine", policy="warn", enabled=True, patterns=["cfgapi"])
    RegistryCredential.objects.create(registry="127.0.0.1:5000", username="pusher", password=SECRETS["registry_password"],
                                      insecure=True, note="local registry")
    RegistryCredential.objects.create(registry="ghcr.io", note="anonymous")

    check = HealthCheck.objects.create(container=web, name="home", url="http://127.0.0.1:9/health", expected_status="200-299",
                                       headers=json.dumps({"X-Token": SECRETS["check_header"]}), basic_auth_user="probe",
                                       basic_auth_password=SECRETS["check_password"], interval_seconds=30, timeout_seconds=2.5,
                                       failure_threshold=4, auto_restart=True, enabled=True)
    HealthCheck.objects.create(container=api, url="http://127.0.0.1:9/", method="HEAD", enabled=False)
    AutoRestartConfig.objects.create(container=web, max_retries=5, initial_delay_seconds=3, backoff_factor=1.5,
                                     max_delay_seconds=60, reset_after_minutes=20)

    slack = NotificationChannel(name=f"slack-{unique}", kind="slack", config={"channel": "#ops"})
    slack.set_secrets({"webhook_url": SECRETS["slack_webhook"]})
    slack.save()
    hook = NotificationChannel(name=f"hook-{unique}", kind="webhook", config={})
    hook.set_secrets({"url": SECRETS["webhook_url"], "headers": {"Authorization": SECRETS["webhook_header"]}})
    hook.save()
    ntfy = NotificationChannel(name=f"ntfy-{unique}", kind="ntfy", config={"topic": "dockmon", "base_url": "http://127.0.0.1:9/"},
                               enabled=False)
    ntfy.set_secrets({"access_token": SECRETS["ntfy_token"]})
    ntfy.save()

    on_web = AlertRule.objects.create(name=f"web-down-{unique}", kind="container_stopped", scope="containers", cooldown_seconds=60,
                                      severity="critical", title_template="{{ container }} is down")
    on_web.containers.set([web])
    on_web.channels.set([slack, hook])
    on_host = AlertRule.objects.create(name=f"beta-offline-{unique}", kind="host_offline", scope="hosts")
    on_host.hosts.set([host_b])
    on_host.channels.set([ntfy])
    by_tag = AlertRule.objects.create(name=f"prod-cpu-{unique}", kind="cpu_high", scope="tags", threshold=90, duration_seconds=120)
    by_tag.tags.set([prod])
    # Two rules of one name: matched in order, not merged.
    AlertRule.objects.create(name=f"twin-{unique}", kind="container_started", enabled=False)
    AlertRule.objects.create(name=f"twin-{unique}", kind="container_started", cooldown_seconds=10)

    now = timezone.now().replace(microsecond=123456)
    MaintenanceWindow.objects.create(name=f"db-night-{unique}", container=db, recurrence="weekly", weekdays=[0, 3],
                                     start_time=time(1, 0), duration_minutes=90, timezone="Europe/Paris")
    MaintenanceWindow.objects.create(name=f"alpha-move-{unique}", host=host_a, starts_at=now, ends_at=now + timedelta(hours=2))
    MaintenanceWindow.objects.create(name=f"everything-{unique}", starts_at=now, ends_at=now + timedelta(minutes=5), enabled=False)
    return {"host_a": host_a, "host_b": host_b, "web": web, "db": db, "api": api, "names": names, "check": check,
            "slack": slack, "hook": hook, "ntfy": ntfy, "unique": unique}


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------
def test_the_export_holds_every_kind_and_no_secret(configured, make_host, beta):
    tls_host = make_host(beta, name=f"cfg-tls-{configured['unique']}", via="tls")
    doc = config_io.export_config()
    text = json.dumps(doc)
    for name, value in SECRETS.items():
        assert value not in text, name
    assert tls_host.tls_key.strip().splitlines()[1] not in text and "BEGIN" not in text
    assert doc["dockmon_config"] == 1 and doc["exported_at"].endswith("Z")
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts[tls_host.name] == {"id": str(tls_host.pk), "name": tls_host.name, "url": tls_host.url, "enabled": True, "tls": True}
    assert hosts[configured["host_a"].name]["tls"] is False
    web, db = configured["web"], configured["db"]
    entries = {(e["host"], e["name"]): e for e in doc["containers"]}
    assert entries[(str(web.host_id), web.name)] == {
        "host": str(web.host_id), "name": web.name, "tags": sorted([f"prod-{configured['unique']}", f"front-{configured['unique']}"]),
        "desired_state": "", "update_policy": {"policy": "warn", "note": "pinned by ops"}, "auto_update": None,
        "update_tracking": {"tracking_mode": "minor", "include_prerelease": True},
        "auto_restart": {"enabled": True, "max_retries": 5, "initial_delay_seconds": 3.0, "backoff_factor": 1.5,
                         "max_delay_seconds": 60.0, "reset_after_minutes": 20},
    }
    assert entries[(str(db.host_id), db.name)]["desired_state"] == "stopped"
    api = configured["api"]
    assert entries[(str(api.host_id), api.name)]["tags"] == [f"backend-{configured['unique']}"]  # not the compose one
    assert f"compose:cfgproj{configured['unique']}" in {t["name"] for t in doc["tags"]}
    assert entries[(str(db.host_id), db.name)]["auto_update"] == {"enabled": True, "days": [5, 6], "start": "02:00:00", "end": "04:30:00",
                                                                  "timezone": "Europe/Berlin"}
    registries = {r["registry"]: r for r in doc["registry_credentials"]}
    assert registries["127.0.0.1:5000"]["has_password"] is True and registries["ghcr.io"]["has_password"] is False
    check = next(c for c in doc["health_checks"] if c["name"] == "home")
    assert check["container"] == web.name and check["header_names"] == ["X-Token"] and check["has_basic_auth_password"] is True
    assert "headers" not in check and "basic_auth_password" not in check
    channels = {c["name"]: c for c in doc["notification_channels"]}
    hook = channels[configured["hook"].name]
    assert hook["config"] == {} and hook["secrets_needed"] == ["headers", "url"]
    slack = channels[configured["slack"].name]
    assert slack["config"] == {"channel": "#ops"} and slack["secrets_needed"] == ["webhook_url"]
    rule = next(r for r in doc["alert_rules"] if r["name"].startswith("web-down"))
    assert rule["containers"] == [{"host": str(web.host_id), "name": web.name}]
    assert rule["channels"] == sorted([configured["slack"].name, configured["hook"].name])
    window = next(w for w in doc["maintenance_windows"] if w["name"].startswith("db-night"))
    assert window["container"] == {"host": str(db.host_id), "name": db.name} and window["host"] is None
    assert "users, groups, object permissions and API tokens" in doc["not_included"]


def test_the_api_export_is_the_same_document_and_audited(configured, django_user_model):
    admin = django_user_model.objects.create_superuser("cfg-admin", password=None)
    response = _client_for(admin).get("/api/v1/config/export/")
    assert response.status_code == 200
    assert _without_time(response.json()) == _without_time(config_io.export_config())
    for value in SECRETS.values():
        assert value not in response.content.decode()
    entry = AuditEntry.objects.get(action="config.export")
    assert entry.username == "cfg-admin" and entry.changes["counts"]["hosts"] == 2


# ---------------------------------------------------------------------------
# Round trip, idempotence, dry run
# ---------------------------------------------------------------------------
def test_round_trip_to_a_fresh_database(configured):
    before = config_io.export_config()
    old_keys = {configured["web"].key, configured["db"].key, configured["api"].key}
    _flush()

    report = config_io.import_config(json.loads(json.dumps(before)))
    assert report["dry_run"] is False
    assert all(n["skipped"] == 0 for n in report["summary"].values()), report["items"]
    assert report["summary"]["hosts"]["created"] == 2 and report["summary"]["alert_rules"]["created"] == 5
    assert {s["host"] for s in report["engine_sync"] if s["ok"]} == {configured["host_a"].name, configured["host_b"].name}
    # The same hosts with the same ids; the containers found again on their engines, same keys.
    assert set(DockerHost.objects.values_list("pk", flat=True)) == {configured["host_a"].pk, configured["host_b"].pk}
    assert old_keys <= set(Container.objects.values_list("key", flat=True))
    api = Container.objects.get(pk=configured["api"].pk)
    assert {(link.tag.name, link.source) for link in api.tag_links.select_related("tag")} == {
        (f"compose:cfgproj{configured['unique']}", "compose"), (f"backend-{configured['unique']}", "user")}
    added = Event.objects.filter(type="host.added")
    assert {e.host_id for e in added} == {configured["host_a"].pk, configured["host_b"].pk}
    assert all("from a configuration file" in e.message for e in added)
    had_secrets = _with_secrets(before)
    assert len(had_secrets) == 5
    assert _sans_secret_marks(config_io.export_config(), had_secrets) == _sans_secret_marks(before, had_secrets)

    # Secrets were not in the file, so they are not here: what needs them says so, and is off.
    checks = _results(report, "health_checks")
    home = next(item for ref, item in checks.items() if ref.endswith(": home"))
    assert any("header values (X-Token)" in n and "basic-auth password" in n for n in home["notes"])
    assert not HealthCheck.objects.get(name="home").enabled
    channels = _results(report, "notification_channels")
    assert any("webhook_url" in n for n in channels[configured["slack"].name]["notes"])
    assert not NotificationChannel.objects.get(name=configured["slack"].name).enabled
    assert NotificationChannel.objects.get(name=configured["slack"].name).secrets == ""
    assert any("password" in n for n in _results(report, "registry_credentials")["127.0.0.1:5000"]["notes"])
    assert RegistryCredential.objects.get(registry="127.0.0.1:5000").password == ""


def test_importing_twice_changes_nothing(configured):
    doc = config_io.export_config()
    # Into the database it came from: everything is already so.
    report = config_io.import_config(doc)
    assert _changes(report) == 0 and all(n["skipped"] == 0 for n in report["summary"].values()), report["items"]
    _flush()
    first = config_io.import_config(doc)
    assert _changes(first) > 0
    stamps = {model.__name__: sorted(str(v) for v in model.objects.values_list("updated_at", flat=True))
              for model in (DockerHost, HealthCheck, NotificationChannel, AlertRule, PolicyCategory)}
    counts = _row_counts()
    events = Event.objects.count()
    second = config_io.import_config(doc)
    assert _changes(second) == 0, [i for i in second["items"] if i["result"] != "unchanged"]
    assert sum(n["unchanged"] for n in second["summary"].values()) == sum(
        n["created"] + n["updated"] + n["unchanged"] for n in first["summary"].values())
    assert _row_counts() == counts and Event.objects.count() == events
    assert stamps == {model.__name__: sorted(str(v) for v in model.objects.values_list("updated_at", flat=True))
                      for model in (DockerHost, HealthCheck, NotificationChannel, AlertRule, PolicyCategory)}


def test_a_dry_run_writes_nothing(configured):
    doc = config_io.export_config()
    _flush()
    events = Event.objects.count()
    audit_rows = AuditEntry.objects.count()
    report = config_io.import_config(doc, dry_run=True)
    assert report["dry_run"] is True
    # It reports what an import would do, engine sync included...
    assert report["summary"]["hosts"]["created"] == 2 and report["summary"]["health_checks"]["created"] == 2
    assert report["summary"]["containers"]["skipped"] == 0
    # ...and leaves nothing behind.
    assert all(n == 0 for n in _row_counts().values()), _row_counts()
    assert Event.objects.count() == events and AuditEntry.objects.count() == audit_rows
    # The real import then does what the dry run said.
    real = config_io.import_config(doc)
    assert real["summary"] == report["summary"]


def test_stored_secrets_survive_an_import(configured):
    doc = config_io.export_config()
    web = configured["web"]
    # Someone changed settings here since the export; the import brings them back, secrets untouched.
    HealthCheck.objects.filter(name="home").update(interval_seconds=300)
    NotificationChannel.objects.filter(pk=configured["slack"].pk).update(config={"channel": "#other"})
    report = config_io.import_config(doc)
    assert report["summary"]["health_checks"]["updated"] == 1 and report["summary"]["notification_channels"]["updated"] == 1
    check = HealthCheck.objects.get(name="home")
    assert check.interval_seconds == 30 and check.enabled
    assert check.header_dict == {"X-Token": SECRETS["check_header"]} and check.basic_auth_password == SECRETS["check_password"]
    slack = NotificationChannel.objects.get(pk=configured["slack"].pk)
    assert slack.config == {"channel": "#ops"} and slack.secret_dict == {"webhook_url": SECRETS["slack_webhook"]} and slack.enabled
    assert RegistryCredential.objects.get(registry="127.0.0.1:5000").password == SECRETS["registry_password"]
    assert not any(item.get("notes") for item in report["items"] if item["kind"] != "containers"), report["items"]
    assert Container.objects.get(pk=web.pk).tag_links.count() == 2


def test_a_channel_imported_without_secrets_is_enabled_once_they_are_entered(configured):
    doc = config_io.export_config()
    _flush()
    config_io.import_config(doc)
    slack = NotificationChannel.objects.get(name=configured["slack"].name)
    assert not slack.enabled and "secret" in slack.disabled_reason
    # Re-importing keeps it off (its secret is still missing): no change the second time.
    again = config_io.import_config(doc)
    assert _results(again, "notification_channels")[slack.name]["result"] == "unchanged"
    # A person enters the webhook and turns it on; the file no longer turns it off.
    slack.set_secrets({"webhook_url": SECRETS["slack_webhook"]})
    slack.enabled, slack.disabled_reason = True, ""
    slack.save()
    third = config_io.import_config(doc)
    assert slack.name not in _results(third, "notification_channels")
    slack.refresh_from_db()
    assert slack.enabled and slack.secret_dict == {"webhook_url": SECRETS["slack_webhook"]}


def test_a_file_exported_after_an_import_still_says_what_is_missing(db):
    """A second-generation file (exported where the secrets were never entered) no longer lists
    them; what cannot work without them is still caught."""
    doc = {"dockmon_config": 1,
           "registry_credentials": [{"registry": "registry.example.invalid", "username": "pusher", "has_password": False}],
           "notification_channels": [{"name": "cfg-gen2", "kind": "slack", "config": {}, "secrets_needed": [], "enabled": True}]}
    report = config_io.import_config(doc)
    assert _results(report, "registry_credentials")["registry.example.invalid"]["notes"] == [
        "needs its password (or token) again: enter it under registry credentials"]
    assert _results(report, "notification_channels")["cfg-gen2"]["notes"] == [
        "needs its secret settings (webhook_url) again: disabled until they are entered"]
    assert not NotificationChannel.objects.get(name="cfg-gen2").enabled
    assert _changes(config_io.import_config(doc)) == 0


# ---------------------------------------------------------------------------
# Containers that are not there yet; hosts that cannot be reached
# ---------------------------------------------------------------------------
def test_a_container_that_does_not_exist_yet_is_skipped_then_bound(transactional_db, alpha, make_host, unique, run_container,
                                                                   sync_container, containers_to_remove):
    host = make_host(alpha, name=f"cfg-later-{unique}")
    name = f"cfglater{unique}"
    container = sync_container(host, _sleeper(run_container, alpha, name))
    Container.objects.filter(pk=container.pk).update(desired_state="running")
    HealthCheck.objects.create(container=container, name="later", url="http://127.0.0.1:9/")
    rule = AlertRule.objects.create(name=f"later-{unique}", kind="container_stopped", scope="containers")
    rule.containers.set([container])
    MaintenanceWindow.objects.create(name=f"later-{unique}", container=container, recurrence="weekly", weekdays=[1],
                                     start_time=time(3, 0))
    doc = config_io.export_config()
    alpha.docker("rm", "-f", name)
    _flush()

    report = config_io.import_config(doc)
    label = f"{host.name}/{name}"
    entry = _results(report, "containers")[label]
    assert entry["result"] == "skipped" and f"no container named {name!r}" in entry["reason"] and "engine was asked" in entry["reason"]
    assert _results(report, "health_checks")[f"{label}: later"]["result"] == "skipped"
    assert _results(report, "alert_rules")[rule.name]["result"] == "skipped"
    # A window on a missing container is left out, never turned into a global one.
    assert _results(report, "maintenance_windows")[f"later-{unique}"]["result"] == "skipped"
    assert MaintenanceWindow.objects.count() == 0 and HealthCheck.objects.count() == 0
    assert [s["ok"] for s in report["engine_sync"]] == [True] and report["engine_sync"][0]["host"] == host.name

    # The container appears (new id); importing again binds everything to it.
    new_id = _sleeper(run_container, alpha, name)
    report = config_io.import_config(doc)
    assert _results(report, "containers")[label]["result"] == "updated"
    assert _results(report, "health_checks")[f"{label}: later"]["result"] == "created"
    assert _results(report, "alert_rules")[rule.name]["result"] == "created"
    bound = Container.objects.get(host_id=host.pk, name=name, removed_at__isnull=True)
    assert bound.container_id == new_id and bound.desired_state == "running"
    assert HealthCheck.objects.get().container_id == bound.key
    assert list(AlertRule.objects.get(name=rule.name).containers.all()) == [bound]
    assert MaintenanceWindow.objects.get().container_id == bound.key
    assert _changes(config_io.import_config(doc)) == 0


def test_a_tls_host_needs_its_certificates_and_its_containers_wait(transactional_db, beta, make_host, unique, run_container,
                                                                   sync_container):
    host = make_host(beta, name=f"cfg-tls-{unique}", via="tls")
    name = f"cfgtls{unique}"
    container = sync_container(host, _sleeper(run_container, beta, name))
    UpdatePolicy.objects.create(container=container, policy="block")
    doc = config_io.export_config()
    _flush()

    report = config_io.import_config(doc)
    item = _results(report, "hosts")[host.name]
    assert item["result"] == "created" and any("TLS certificates" in n for n in item["notes"])
    imported = DockerHost.objects.get(pk=host.pk)
    assert not imported.enabled and imported.tls_key == ""
    entry = _results(report, "containers")[f"{host.name}/{name}"]
    assert entry["result"] == "skipped" and "needs its TLS certificates" in entry["reason"]

    # Certificates added and the host switched on (as a person would): the next import binds.
    imported.tls_ca, imported.tls_cert, imported.tls_key = (open(beta.tls[k]).read() for k in ("ca", "cert", "key"))
    imported.enabled = True
    imported.save()
    report = config_io.import_config(doc)
    assert _results(report, "containers")[f"{host.name}/{name}"]["result"] == "updated"
    assert DockerHost.objects.get(pk=host.pk).enabled
    assert UpdatePolicy.objects.get().container.name == name
    assert _changes(config_io.import_config(doc)) == 0


def test_an_unreachable_host_is_reported_and_the_others_import(transactional_db, alpha, make_host, unique, run_container,
                                                               sync_container):
    from testkit.testing import free_port

    good = make_host(alpha, name=f"cfg-good-{unique}")
    web = sync_container(good, _sleeper(run_container, alpha, f"cfggood{unique}"))
    ContainerTag.objects.create(container=web, tag=Tag.objects.create(name=f"ok-{unique}"))
    doc = config_io.export_config()
    dead_id = "7d0c6f3e-0d55-4a8e-9a43-3c5b7c1f0a11"
    doc["hosts"].append({"id": dead_id, "name": f"cfg-dead-{unique}", "url": f"tcp://127.0.0.1:{free_port()}", "enabled": True,
                         "tls": False})
    doc["containers"].append({"host": dead_id, "name": "app", "tags": [f"ok-{unique}"]})
    _flush()
    report = config_io.import_config(doc)
    entry = _results(report, "containers")[f"cfg-dead-{unique}/app"]
    assert entry["result"] == "skipped" and "did not answer" in entry["reason"]
    assert [s["ok"] for s in report["engine_sync"] if s["host"] == f"cfg-dead-{unique}"] == [False]
    assert _results(report, "containers")[f"{good.name}/{web.name}"]["result"] == "updated"
    assert DockerHost.objects.filter(pk=dead_id, enabled=True).exists()


def test_an_engine_that_never_answers_is_reported_after_its_timeout(db, settings, unique):
    import socket
    import threading

    settings.DOCKMON_ENGINE_TIMEOUT = 1.0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_keep_quiet():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_keep_quiet, daemon=True)
    thread.start()
    try:
        host_id = "3c9e1f0a-6b2d-4e8f-a1c3-5d7b9e0f2a4c"
        doc = {"dockmon_config": 1,
               "hosts": [{"id": host_id, "name": f"cfg-silent-{unique}", "url": f"tcp://127.0.0.1:{listener.getsockname()[1]}"}],
               "containers": [{"host": host_id, "name": "app", "desired_state": "stopped"}]}
        report = config_io.import_config(doc)
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
    assert held, "the import never tried the engine"
    assert report["engine_sync"] == [{"host": f"cfg-silent-{unique}", "ok": False, "detail": "The engine did not answer in time."}]
    entry = _results(report, "containers")[f"cfg-silent-{unique}/app"]
    assert entry["result"] == "skipped" and "did not answer" in entry["reason"]
    assert report["summary"]["hosts"]["created"] == 1


def test_hosts_of_another_dockmon_are_matched_by_name(configured):
    """Another DockMon watching the same engines knows them under other ids: matched by name,
    the containers found there, nothing duplicated."""
    doc = config_io.export_config()
    host_a = configured["host_a"]
    for entry in doc["containers"] + doc["health_checks"]:
        if entry["host"] == str(host_a.pk):
            entry["host"] = "0b9a5c1e-3f0e-4a4b-8d7a-2a9c9f0c6d01"
    for host in doc["hosts"]:
        if host["id"] == str(host_a.pk):
            host["id"] = "0b9a5c1e-3f0e-4a4b-8d7a-2a9c9f0c6d01"
    report = config_io.import_config(doc)
    item = _results(report, "hosts")[host_a.name]
    assert item["result"] == "unchanged" and any("same name" in n for n in item["notes"])
    assert DockerHost.objects.count() == 2 and _changes(report) == 0, report["items"]


def test_a_host_that_cannot_be_imported_says_why_for_its_containers(db, alpha, make_host):
    here = make_host(alpha, name="cfg-shared")
    new_id = "5f2b0c9d-8a41-4e6f-b2c3-9d8e7f6a5b4c"
    doc = {"dockmon_config": 1,
           # A new host whose name another host of the file still holds here (it is renamed later).
           "hosts": [{"id": new_id, "name": "cfg-shared", "url": "tcp://127.0.0.1:9", "enabled": False},
                     {"id": str(here.pk), "name": "cfg-renamed", "url": here.url, "enabled": True}],
           "containers": [{"host": new_id, "name": "app", "desired_state": "running"}]}
    report = config_io.import_config(doc)
    hosts = _results(report, "hosts")
    assert hosts["cfg-shared"] == {"kind": "hosts", "ref": "cfg-shared", "result": "skipped",
                                   "reason": "another host is named 'cfg-shared'"}
    assert hosts["cfg-renamed"]["result"] == "updated"
    entry = _results(report, "containers")["cfg-shared/app"]
    assert entry["result"] == "skipped" and "was not imported (another host is named 'cfg-shared')" in entry["reason"]
    assert list(DockerHost.objects.values_list("pk", "name")) == [(here.pk, "cfg-renamed")]
    changed = Event.objects.get(type="host.changed")
    assert changed.host_id == here.pk and changed.data["fields"] == ["name"]


# ---------------------------------------------------------------------------
# Invalid documents
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(("doc", "where"), [
    ([], "non_field_errors"),
    ({"hosts": []}, "dockmon_config"),
    ({"dockmon_config": 2}, "dockmon_config"),
    ({"dockmon_config": True}, "dockmon_config"),
    ({"dockmon_config": 1, "hostz": []}, "hostz"),
    ({"dockmon_config": 1, "hosts": {}}, "hosts"),
    ({"dockmon_config": 1, "hosts": ["x"]}, "hosts"),
    ({"dockmon_config": 1, "hosts": [{"id": "nope", "name": "h", "url": "unix:///x.sock"}]}, "hosts"),
    ({"dockmon_config": 1, "hosts": [{"id": "7d0c6f3e-0d55-4a8e-9a43-3c5b7c1f0a11", "name": "h", "url": "http://x"}]}, "hosts"),
    ({"dockmon_config": 1, "hosts": [{"id": "7d0c6f3e-0d55-4a8e-9a43-3c5b7c1f0a11", "name": "h", "url": "unix:///x", "tls": True}]}, "hosts"),
    ({"dockmon_config": 1, "tags": [{"name": "a"}, {"name": "a"}]}, "tags"),
    ({"dockmon_config": 1, "containers": [{"host": "7d0c6f3e-0d55-4a8e-9a43-3c5b7c1f0a11", "name": "c", "desired_state": "flying"}]},
     "containers"),
    ({"dockmon_config": 1, "containers": [{"host": "7d0c6f3e-0d55-4a8e-9a43-3c5b7c1f0a11", "name": "c", "colour": "red"}]},
     "containers"),
    ({"dockmon_config": 1, "containers": [{"host": "7d0c6f3e-0d55-4a8e-9a43-3c5b7c1f0a11", "name": "c",
                                           "auto_update": {"start": "02:00"}}]}, "containers"),
    ({"dockmon_config": 1, "notification_channels": [{"name": "s", "kind": "slack", "config": {"webhook_url": "https://x"}}]},
     "notification_channels"),
    ({"dockmon_config": 1, "notification_channels": [{"name": "s", "kind": "pager"}]}, "notification_channels"),
    ({"dockmon_config": 1, "alert_rules": [{"name": "r", "kind": "cpu_high"}]}, "alert_rules"),
    ({"dockmon_config": 1, "alert_rules": [{"name": "r", "kind": "container_stopped", "name_regex": "(a+)+$"}]}, "alert_rules"),
    ({"dockmon_config": 1, "health_checks": [{"host": "7d0c6f3e-0d55-4a8e-9a43-3c5b7c1f0a11", "container": "c",
                                              "url": "http://169.254.169.254/"}]}, "health_checks"),
    ({"dockmon_config": 1, "maintenance_windows": [{"name": "w", "recurrence": "weekly"}]}, "maintenance_windows"),
    ({"dockmon_config": 1, "policy_categories": [{"name": "not a slug", "policy": "allow"}]}, "policy_categories"),
    ({"dockmon_config": 1, "registry_credentials": [{"registry": "bad host@x"}]}, "registry_credentials"),
    # Free-form settings: a NUL character no database stores, a value a transport's check chokes on.
    ({"dockmon_config": 1, "notification_channels": [{"name": "s", "kind": "slack", "config": {"channel": "a\x00b"}}]},
     "notification_channels"),
    ({"dockmon_config": 1, "notification_channels": [{"name": "m", "kind": "email", "config": {"to": "a@b.c", "port": "\u00b2"}}]},
     "notification_channels"),
    ({"dockmon_config": 1, "notification_channels": [{"name": "m", "kind": "email", "config": {"to": {"a": 1}, "port": [1]}}]},
     "notification_channels"),
])
def test_invalid_documents_are_refused_with_field_errors(db, doc, where):
    with pytest.raises(config_io.ConfigError) as caught:
        config_io.import_config(doc)
    assert where in caught.value.errors, caught.value.errors


def test_an_invalid_item_writes_nothing_at_all(db, alpha):
    doc = {"dockmon_config": 1,
           "hosts": [{"id": "7d0c6f3e-0d55-4a8e-9a43-3c5b7c1f0a11", "name": "fine", "url": alpha.unix_url}],
           "tags": [{"name": "fine"}],
           "alert_rules": [{"name": "bad", "kind": "container_stopped", "scope": "containers"}]}
    with pytest.raises(config_io.ConfigError) as caught:
        config_io.import_config(doc)
    assert caught.value.errors == {"alert_rules": {"0": {"containers": ["Choose at least one container."]}}}
    assert not DockerHost.objects.exists() and not Tag.objects.filter(name="fine").exists()


# ---------------------------------------------------------------------------
# API: who may, what it answers
# ---------------------------------------------------------------------------
@pytest.fixture
def people(db, people):
    """The administrator, a member of the Administrators role, an operator and an outsider."""
    people.add("role_admin", groups=("Administrators",))
    people.add("operator", groups=("Operators",))
    return people


def test_only_administrators_may_export_or_import(people, make_host, alpha):
    host = make_host(alpha, name="cfg-perm-host")
    from guardian.shortcuts import assign_perm

    # Even full rights on a host do not make an administrator.
    assign_perm("containers.change_dockerhost", people["outsider"], host)
    doc = {"dockmon_config": 1, "tags": [{"name": "cfg-perm"}]}
    for who in ("operator", "outsider"):
        client = _client_for(people[who])
        assert client.get("/api/v1/config/export/").status_code == 403
        assert client.post("/api/v1/config/import/", doc, format="json").status_code == 403
        assert client.post("/api/v1/config/import/?dry_run=true", doc, format="json").status_code == 403
    anonymous = APIClient()
    assert anonymous.get("/api/v1/config/export/").status_code == 401
    assert anonymous.post("/api/v1/config/import/", doc, format="json").status_code == 401
    assert not Tag.objects.filter(name="cfg-perm").exists()
    for who in ("admin", "role_admin"):
        client = _client_for(people[who])
        assert client.get("/api/v1/config/export/").status_code == 200
        response = client.post("/api/v1/config/import/?dry_run=true", doc, format="json")
        assert response.status_code == 200 and response.json()["summary"]["tags"]["created"] == 1
    assert not Tag.objects.filter(name="cfg-perm").exists()
    # A read-only token of an administrator may export, not import.
    read_only = _client_for(people["admin"], read_only=True)
    assert read_only.get("/api/v1/config/export/").status_code == 200
    assert read_only.post("/api/v1/config/import/", doc, format="json").status_code == 403
    response = _client_for(people["admin"]).post("/api/v1/config/import/", doc, format="json")
    assert response.status_code == 200 and response.json()["dry_run"] is False
    assert Tag.objects.filter(name="cfg-perm").exists()


def test_the_api_answers_400_for_bad_input_and_audits_imports(people):
    client = _client_for(people["admin"])
    bad_json = client.post("/api/v1/config/import/", "{not json", content_type="application/json")
    assert bad_json.status_code == 400
    assert client.post("/api/v1/config/import/", {"dockmon_config": 7}, format="json").json() == {
        "dockmon_config": ["Unsupported version 7: this DockMon reads version 1."]}
    response = client.post("/api/v1/config/import/", {"dockmon_config": 1, "hosts": [{"id": "x", "name": "", "url": ""}]}, format="json")
    assert response.status_code == 400 and set(response.json()["hosts"]["0"]) == {"id", "name", "url"}
    assert client.post("/api/v1/config/import/?dry_run=maybe", {"dockmon_config": 1}, format="json").json() == {
        "dry_run": ["Must be a valid boolean."]}
    assert client.post("/api/v1/config/import/", [1, 2], format="json").status_code == 400
    secret_doc = {"dockmon_config": 1, "notification_channels": [
        {"name": "cfg-leak", "kind": "slack", "config": {"channel": "#x"}, "secrets_needed": ["webhook_url"]}]}
    ok = client.post("/api/v1/config/import/", secret_doc, format="json")
    assert ok.status_code == 200
    assert ok.json()["items"] == [{"kind": "notification_channels", "ref": "cfg-leak", "result": "created",
                                   "notes": ["needs its secret settings (webhook_url) again: disabled until they are entered"]}]
    rows = AuditEntry.objects.filter(action="config.import").order_by("id")
    assert [r.status_code for r in rows][-1] == 200
    assert rows.last().changes == {"dry_run": False, "summary": ok.json()["summary"]}
    assert rows.filter(status_code=400).exists()


def test_a_document_larger_than_a_form_post_is_accepted_up_to_a_bound(people, monkeypatch):
    from containers.api import config as api_config

    client = _client_for(people["admin"])
    # Over Django's 2.5 MB request-body limit (a config with thousands of containers is).
    big = {"dockmon_config": 1, "not_included": ["x" * 3_000_000], "tags": [{"name": "cfg-big"}]}
    response = client.post("/api/v1/config/import/", big, format="json")
    assert response.status_code == 200 and response.json()["summary"]["tags"]["created"] == 1
    assert AuditEntry.objects.filter(action="config.import", status_code=200).exists()
    assert client.post("/api/v1/config/import/", b"\xff\xfe", content_type="application/json").status_code == 400
    assert client.post("/api/v1/config/import/", "[" * 100_000, content_type="application/json").status_code == 400
    assert client.post("/api/v1/config/import/", "dockmon_config=1", content_type="text/plain").status_code == 415
    monkeypatch.setattr(api_config, "MAX_DOCUMENT_BYTES", 1000)
    response = client.post("/api/v1/config/import/", big, format="json")
    assert response.status_code == 413 and "manage.py import_config" in response.json()["detail"]


def test_the_endpoints_are_in_the_schema(people):
    schema = _client_for(people["admin"]).get("/api/v1/schema/?format=json").json()
    assert "get" in schema["paths"]["/api/v1/config/export/"]
    imp = schema["paths"]["/api/v1/config/import/"]["post"]
    assert {p["name"] for p in imp["parameters"]} == {"dry_run"} and {"200", "400", "403", "413"} <= set(imp["responses"])
    assert list(imp["requestBody"]["content"]) == ["application/json"]


# ---------------------------------------------------------------------------
# Management commands
# ---------------------------------------------------------------------------
def test_the_commands_export_and_import_a_file(configured, tmp_path, capsys):
    path = tmp_path / "dockmon.json"
    call_command("export_config", "-o", str(path))
    doc = json.loads(path.read_text())
    assert _without_time(doc) == _without_time(config_io.export_config())
    for value in SECRETS.values():
        assert value not in path.read_text()
    _flush()
    capsys.readouterr()
    call_command("import_config", str(path), "--dry-run")
    out = capsys.readouterr().out
    assert "Dry run: nothing was written." in out and "hosts: 2 created" in out
    assert DockerHost.objects.count() == 0
    call_command("import_config", str(path))
    out = capsys.readouterr().out
    assert "hosts: 2 created" in out and "! needs its secret settings (webhook_url)" in out
    call_command("import_config", str(path), "--json")
    report = json.loads(capsys.readouterr().out)
    assert _changes(report) == 0
    assert AuditEntry.objects.filter(action="config.import").count() == 3


def test_the_import_command_refuses_bad_files(db, tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_config", str(missing))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{oops")
    with pytest.raises(CommandError, match="is not JSON"):
        call_command("import_config", str(garbage))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"dockmon_config": 1, "tags": [{"name": ""}], "hosts": [{"id": "x"}]}))
    with pytest.raises(CommandError) as caught:
        call_command("import_config", str(wrong))
    text = str(caught.value)
    assert "tags.0.name:" in text and "hosts.0.id:" in text and "hosts.0.url:" in text
