"""Rule semantics without an engine: scopes and the name-pattern guard, durations, occurrences
in a window, hysteresis, host and disk kinds, suppression during an update, re-keying."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import evaluator, regexguard
from alerts.models import Alert, ConditionState, Notification, SubjectState
from alerts.tests.conftest import die, make_channel, make_rule, start
from containers import bus
from containers.models import Container, ContainerTag, DiskUsage, Event, Tag


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a*)*b", "(a|aa)+$", "(\\w+\\s?)*$", "(x+x+)+y", "(a)\\1", "(?=a)a", "a{1,1000}" * 30])
def test_catastrophic_or_oversized_patterns_are_refused(pattern):
    with pytest.raises(ValueError):
        regexguard.validate(pattern)
    assert regexguard.matches(pattern, "a" * 5000) is False


@pytest.mark.parametrize("pattern", ["^web-", "db-[0-9]+$", "(prod|staging)-api", "^[a-z]+(-[a-z0-9]{1,8})?$", "nginx.*proxy"])
def test_ordinary_patterns_are_allowed(pattern):
    assert regexguard.validate(pattern) == pattern


def _event(rows, **data):
    return Event.objects.create(category="container", type="container.state", host=rows.host, container_key=rows.container.key,
                                data=data)


@pytest.mark.django_db
def test_scopes_select_their_containers(rows, unique):
    tag = Tag.objects.create(name=f"prod-{unique}")
    ContainerTag.objects.create(container=rows.container, tag=tag)
    by_tag = make_rule("container_stopped", scope="tags", name="by tag")
    by_tag.tags.set([tag])
    other_tag = make_rule("container_stopped", scope="tags", name="other tag")
    other_tag.tags.set([Tag.objects.create(name=f"dev-{unique}")])
    by_host = make_rule("container_stopped", scope="hosts", name="by host")
    by_host.hosts.set([rows.host])
    by_regex = make_rule("container_stopped", name="regex", name_regex="^web-")
    no_match = make_rule("container_stopped", name="regex2", name_regex="^db-")
    evaluator.evaluate_event(_event(rows, state="exited", previous_state="running", exit_code=2).pk)
    fired = set(Alert.objects.values_list("rule_id", flat=True))
    assert fired == {by_tag.pk, by_host.pk, by_regex.pk}
    assert other_tag.pk not in fired and no_match.pk not in fired


@pytest.mark.django_db
def test_a_duration_fires_only_when_the_condition_lasted(rows):
    rule = make_rule("container_stopped", duration_seconds=60)
    evaluator.evaluate_event(_event(rows, state="exited", previous_state="running", exit_code=1).pk)
    assert not Alert.objects.exists()
    assert evaluator.evaluate_due() == 0
    ConditionState.objects.filter(rule=rule).update(first_breach_at=timezone.now() - timedelta(seconds=61))
    assert evaluator.evaluate_due() == 1 and evaluator.evaluate_due() == 0
    assert Alert.objects.get(rule=rule).occurrences == 1
    # Cleared before the duration: nothing fires later.
    evaluator.evaluate_event(_event(rows, state="running", previous_state="exited").pk)
    assert Alert.objects.get(rule=rule).state == "resolved"
    evaluator.evaluate_event(_event(rows, state="exited", previous_state="running", exit_code=1).pk)
    evaluator.evaluate_event(_event(rows, state="running", previous_state="exited").pk)
    ConditionState.objects.filter(rule=rule).update()
    assert ConditionState.objects.get(rule=rule).first_breach_at is None and evaluator.evaluate_due() == 0


@pytest.mark.django_db
def test_occurrences_within_a_window(rows):
    rule = make_rule("container_started", occurrences=3, window_seconds=600, cooldown_seconds=0)
    for _ in range(2):
        evaluator.evaluate_event(_event(rows, state="running", previous_state="exited").pk)
    assert not Alert.objects.exists()
    evaluator.evaluate_event(_event(rows, state="running", previous_state="exited").pk)
    alert = Alert.objects.get(rule=rule)
    assert alert.occurrences == 1 and alert.context["hits"] == 3
    # Old hits fall out of the window.
    state = ConditionState.objects.get(rule=rule)
    state.hits = [(timezone.now() - timedelta(hours=1)).isoformat()] * 3
    state.save()
    Alert.objects.filter(pk=alert.pk).update(state="resolved", resolved_at=timezone.now() - timedelta(days=1))
    evaluator.evaluate_event(_event(rows, state="running", previous_state="exited").pk)
    assert Alert.objects.filter(rule=rule, state="open").count() == 0


@pytest.mark.django_db
def test_metric_hysteresis_uses_the_clear_threshold(rows):
    rule = make_rule("memory_high", threshold=80, clear_threshold=60, threshold_unit="percent")
    key, t0 = rows.container.key, timezone.now()

    def sample(percent, seconds):
        evaluator.evaluate_samples(str(rows.host.pk), t0 + timedelta(seconds=seconds), [[key, 1.0, percent * 10, 1000]])

    sample(90, 0)
    alert = Alert.objects.get(rule=rule)
    assert alert.state == "open" and round(alert.value) == 90
    sample(70, 10)  # below the threshold, above the clear threshold: still open
    assert Alert.objects.get(pk=alert.pk).state == "open"
    sample(50, 20)
    assert Alert.objects.get(pk=alert.pk).state == "resolved"
    sample(95, 5)  # an older sample than the last one applied: ignored
    assert Alert.objects.filter(rule=rule, state="open").count() == 0


@pytest.mark.django_db
def test_memory_in_absolute_units(rows):
    rule = make_rule("memory_high", threshold=100, threshold_unit="mib")
    evaluator.evaluate_samples(str(rows.host.pk), timezone.now(), [[rows.container.key, 1.0, 150 * 1024**2, 0]])
    alert = Alert.objects.get(rule=rule)
    assert alert.value == 150 and "150.0 MiB" in alert.message


@pytest.mark.django_db(transaction=True)
def test_host_offline_and_disk_high(eager, rows):
    offline = make_rule("host_offline")
    disk = make_rule("disk_high", threshold=1, threshold_unit="gib", clear_threshold=0.5)
    bus.emit("host.status", category="host", host=rows.host,
             data={"host": str(rows.host.pk), "status": "offline", "previous": "online", "error": "connection refused"})
    alert = Alert.objects.get(rule=offline)
    assert alert.scope_type == "host" and alert.container_id is None and "connection refused" in alert.message
    bus.emit("host.status", category="host", host=rows.host, data={"host": str(rows.host.pk), "status": "online", "previous": "offline"})
    assert Alert.objects.get(pk=alert.pk).state == "resolved"
    DiskUsage.objects.create(host=rows.host, images_size=2 * 1024**3)
    disk_alert = Alert.objects.get(rule=disk)
    assert disk_alert.dedup_key == f"{disk.pk}|disk_high|host:{rows.host.pk}" and disk_alert.value == 2
    DiskUsage.objects.create(host=rows.host, images_size=100)
    assert Alert.objects.get(pk=disk_alert.pk).state == "resolved"


@pytest.mark.django_db(transaction=True)
def test_health_check_failures_and_docker_health(eager, rows):
    failed = make_rule("health_check_failed")
    unhealthy = make_rule("container_unhealthy")
    bus.emit("health.status", category="health", host=rows.host.pk, container=rows.container,
             data={"key": rows.container.key, "status": "unhealthy", "previous": "healthy", "error": "HTTP 503"})
    assert "HTTP 503" in Alert.objects.get(rule=failed).message
    bus.emit("container.state", category="container", host=rows.host.pk, container=rows.container,
             data={"state": "running", "previous_state": "running", "health": "unhealthy"})
    assert Alert.objects.filter(rule=unhealthy, state="open").count() == 1
    bus.emit("health.status", category="health", host=rows.host.pk, container=rows.container,
             data={"key": rows.container.key, "status": "healthy", "previous": "unhealthy"})
    bus.emit("container.state", category="container", host=rows.host.pk, container=rows.container,
             data={"state": "running", "previous_state": "running", "health": "healthy"})
    assert set(Alert.objects.values_list("state", flat=True)) == {"resolved"}


@pytest.mark.django_db(transaction=True)
def test_an_update_suppresses_container_alerts_until_it_ends(eager, rows, receiver):
    hook = make_channel("webhook", name="upd", url=receiver.url("/upd"))
    stopped = make_rule("container_stopped", [hook])
    failed = make_rule("update_failed", [hook])
    bus.emit("update.started", category="update", host=rows.host.pk, container=rows.container, data={"run": 1})
    assert SubjectState.objects.get(container_key=rows.container.key).suppressed_until > timezone.now()
    die(rows.container)  # the update stops the old container: no alert
    assert not Alert.objects.filter(rule=stopped).exists()
    bus.emit("update.failed", category="update", host=rows.host.pk, container=rows.container, data={"error": "pull failed"})
    assert "pull failed" in Alert.objects.get(rule=failed).message
    assert SubjectState.objects.get(container_key=rows.container.key).suppressed_until is None
    start(rows.container)
    die(rows.container)
    assert Alert.objects.filter(rule=stopped).count() == 1
    assert len(receiver.on("/upd")) == 2


@pytest.mark.django_db(transaction=True)
def test_alerts_follow_a_recreated_container(eager, rows, unique):
    from containers import services

    rule = make_rule("container_stopped")
    rule.containers.set([rows.container])
    die(rows.container)
    old_key = rows.container.key
    alert = Alert.objects.get(rule=rule)
    SubjectState.objects.create(container_key=old_key, suppressed_until=timezone.now() + timedelta(minutes=5))
    new = Container.objects.create(host=rows.host, container_id="e" * 64, short_id="e" * 12, name=rows.container.name, state="running")
    services.rekey(rows.container, new)
    alert.refresh_from_db()
    assert alert.container_id == new.key and alert.scope_id == new.key
    assert alert.dedup_key == f"{rule.pk}|container_stopped|container:{new.key}"
    assert ConditionState.objects.filter(subject=f"container:{new.key}").exists()
    assert not ConditionState.objects.filter(subject=f"container:{old_key}").exists()
    assert SubjectState.objects.filter(container_key=new.key).exists()
    assert list(rule.containers.values_list("key", flat=True)) == [new.key]


@pytest.mark.django_db(transaction=True)
def test_snoozed_and_acknowledged_alerts_send_no_more_firings(eager, rows, receiver):
    hook = make_channel("webhook", name="ack", url=receiver.url("/ack"))
    rule = make_rule("container_started", [hook], cooldown_seconds=0)
    start(rows.container, previous="created")
    alert = Alert.objects.get(rule=rule)
    evaluator.acknowledge(alert, None)
    start(rows.container, previous="created")
    assert Alert.objects.get(pk=alert.pk).occurrences == 2
    assert Notification.objects.filter(alert=alert).count() == 1 and len(receiver.on("/ack")) == 1
