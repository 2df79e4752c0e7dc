"""Inventory services, the event bus and retention (database only; engine facts built by hand)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from guardian.shortcuts import assign_perm, get_perms

from containers import bus, services
from containers.engine.facts import ContainerFacts
from containers.models import Container, ContainerTag, DockerHost, Event, Tag
from containers.signals import container_rekeyed
from containers.tasks import prune_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def host():
    return DockerHost.objects.create(name="h", url="unix:///nonexistent.sock")


def _facts(cid, name, state="running", **extra):
    return ContainerFacts(container_id=cid.ljust(64, "0"), name=name, image="demo/app:1.0", state=state, **extra)


def test_apply_creates_updates_and_only_announces_real_changes(host):
    seen = []
    listener = bus.subscribe(lambda event: seen.append(event.type))
    try:
        row = services.apply_facts(host, _facts("aaaa", "web", status="Up 1 second"))
        assert row.key == f"{host.pk}:aaaa00000000" and seen == ["container.created"]
        services.apply_facts(host, _facts("aaaa", "web", status="Up 2 seconds"))
        assert seen == ["container.created"]  # a status text tick is not a state change
        services.apply_facts(host, _facts("aaaa", "web", state="exited", exit_code=1))
        assert seen[-1] == "container.state"
        assert Event.objects.filter(type="container.state", severity="warning", container_key=row.key).exists()
    finally:
        bus.unsubscribe(listener)


def test_a_failing_subscriber_does_not_stop_the_event(host):
    def broken(event):
        raise RuntimeError("boom")

    bus.subscribe(broken)
    try:
        event = bus.emit("system.test", category="system", message="still recorded")
    finally:
        bus.unsubscribe(broken)
    assert Event.objects.filter(pk=event.pk).exists()


def test_reconcile_marks_missing_containers_removed_and_keeps_them(host):
    services.reconcile(host, [_facts("aaaa", "a"), _facts("bbbb", "b")], initial=True)
    result = services.reconcile(host, [_facts("aaaa", "a")])
    assert result["removed"] == 1
    gone = Container.objects.get(name="b")
    assert gone.removed_at is not None and gone.state == "removed"


def test_compose_labels_give_a_tag(host):
    row = services.apply_facts(host, _facts("cccc", "shop-web-1", labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}))
    assert row.compose_project == "shop" and list(row.tags.values_list("name", flat=True)) == ["compose:shop"]


def test_recreation_moves_tags_permissions_and_notifies_other_apps(host, django_user_model):
    old = services.apply_facts(host, _facts("dddd", "db"))
    tag = Tag.objects.create(name="critical")
    ContainerTag.objects.create(container=old, tag=tag)
    user = django_user_model.objects.create_user("u", password="pw-user-123456")
    assign_perm("containers.operate_container", user, old)
    moved = []

    def receiver(sender, old_key, new_key, **kwargs):
        moved.append((old_key, new_key))

    container_rekeyed.connect(receiver)
    try:
        services.reconcile(host, [_facts("eeee", "db")])
    finally:
        container_rekeyed.disconnect(receiver)
    new = Container.objects.get(name="db", removed_at__isnull=True)
    assert moved == [(old.key, new.key)]
    assert list(new.tags.values_list("name", flat=True)) == ["critical"]
    assert "operate_container" in get_perms(user, new)
    assert Event.objects.filter(type="container.recreated", data__old_key=old.key, data__new_key=new.key).exists()


def test_a_compose_recreate_is_followed_even_when_the_old_container_was_renamed(host):
    labels = {"com.docker.compose.project": "p", "com.docker.compose.service": "s", "com.docker.compose.container-number": "1"}
    old = services.apply_facts(host, _facts("f0f0", "p-s-1", labels=labels))
    ContainerTag.objects.create(container=old, tag=Tag.objects.create(name="keep"))
    services.apply_facts(host, _facts("f0f0", "f0f0_p-s-1", labels=labels))  # compose renames the old one first
    new = services.apply_facts(host, _facts("f1f1", "p-s-1", labels=labels))
    # The old one still exists (a replica, or about to go): nothing moves yet.
    assert "keep" not in set(new.tags.values_list("name", flat=True))
    services.remove_by_id(host.pk, "f0f0".ljust(64, "0"))  # compose removes the old one last
    assert "keep" in set(new.tags.values_list("name", flat=True))
    assert Container.objects.get(pk=old.pk).replaced_by == new.key


def test_a_compose_replica_that_still_runs_is_not_taken_for_a_predecessor(host):
    labels = {"com.docker.compose.project": "p", "com.docker.compose.service": "s", "com.docker.compose.container-number": "1"}
    first = services.apply_facts(host, _facts("a0a0", "p-s-1", labels=labels))
    second = services.apply_facts(host, _facts("a1a1", "p-s-1-copy", labels=labels))
    assert Container.objects.get(pk=first.pk).replaced_by == "" and not Event.objects.filter(type="container.recreated").exists()
    assert second.replaced_by == ""


def test_host_status_changes_are_logged_once(host):
    services.set_host_status(host.pk, "offline", error="Connection refused")
    services.set_host_status(host.pk, "offline", error="Connection refused")
    services.set_host_status(host.pk, "online")
    statuses = list(Event.objects.filter(type="host.status").order_by("ts").values_list("data__status", flat=True))
    assert statuses == ["offline", "online"]


def test_retention_prunes_old_events_and_long_removed_containers(host, settings):
    settings.DOCKMON_EVENT_RETENTION_DAYS = 7
    settings.DOCKMON_REMOVED_CONTAINER_RETENTION_DAYS = 7
    old = Event.objects.create(category="system", type="x", ts=timezone.now() - timedelta(days=8))
    recent = Event.objects.create(category="system", type="x")
    stale = services.apply_facts(host, _facts("9999", "gone"))
    Container.objects.filter(pk=stale.pk).update(removed_at=timezone.now() - timedelta(days=8))
    present = services.apply_facts(host, _facts("8888", "here"))
    prune_events()
    assert not Event.objects.filter(pk=old.pk).exists() and Event.objects.filter(pk=recent.pk).exists()
    assert not Container.objects.filter(pk=stale.pk).exists() and Container.objects.filter(pk=present.pk).exists()


def test_event_timestamps_from_engines_are_utc(host):
    row = services.apply_facts(host, _facts("7777", "t", started_at=datetime(2026, 1, 1, 12, tzinfo=UTC)))
    row.refresh_from_db()
    assert row.started_at == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_ensure_admin_uses_the_environment(monkeypatch, django_user_model):
    monkeypatch.setenv("DOCKMON_ADMIN_USER", "chief")
    monkeypatch.setenv("DOCKMON_ADMIN_PASSWORD", "pw-chief-12345")
    call_command("ensure_admin")
    user = django_user_model.objects.get(username="chief")
    assert user.is_superuser and user.check_password("pw-chief-12345")
    call_command("ensure_admin")
    assert django_user_model.objects.filter(username="chief").count() == 1


def test_add_local_host_uses_an_existing_socket(alpha, capsys):
    call_command("add_local_host", socket=alpha.sock_path, name="local")
    host = DockerHost.objects.get(name="local")
    assert host.url == alpha.unix_url and host.status == "online"
    call_command("add_local_host", socket="/nonexistent/docker.sock")
    assert "No Docker socket" in capsys.readouterr().out


def _event(cid, action, **attributes):
    from containers.engine.facts import EngineEvent

    return EngineEvent(container_id=cid.ljust(64, "0"), action=action, name=attributes.get("name", ""),
                       time_nano=1_800_000_000_123_456_789, attributes=attributes)


def test_engine_events_apply_every_transition_without_an_inspect(host):
    services.apply_facts(host, _facts("abab", "svc", health="healthy"))
    seen = []
    listener = bus.subscribe(lambda event: seen.append((event.type, event.data.get("state"), event.data.get("health"))))
    try:
        row = services.apply_event(host.pk, _event("abab", "die", exitCode="3"))
        assert (row.state, row.exit_code) == ("exited", 3)
        assert row.finished_at == datetime.fromtimestamp(1_800_000_000.123457, tz=UTC)
        row = services.apply_event(host.pk, _event("abab", "start"))
        assert (row.state, row.exit_code, row.health) == ("running", None, "starting")
        row = services.apply_event(host.pk, _event("abab", "health_status", detail="unhealthy"))
        assert row.health == "unhealthy" and "(unhealthy)" in row.status
        row = services.apply_event(host.pk, _event("abab", "rename", name="svc2"))
        assert row.name == "svc2"
    finally:
        bus.unsubscribe(listener)
    # A die immediately followed by a start is two announced changes, not zero.
    assert [s for s in seen if s[0] == "container.state"][:2] == [("container.state", "exited", "healthy"), ("container.state", "running", "starting")]
    assert services.apply_event(host.pk, _event("ffff", "start")) is None  # unknown: the caller inspects


def test_engine_event_names_keep_their_detail():
    from containers.engine.facts import to_engine_event

    event = to_engine_event({"Type": "container", "Action": "health_status: healthy", "Actor": {"ID": "a" * 64, "Attributes": {"name": "x"}}, "timeNano": 5})
    assert (event.action, event.attributes["detail"], event.name) == ("health_status", "healthy", "x")
