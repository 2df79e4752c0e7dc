"""Each event-driven rule kind, and the rule options (scope by container, auto-resolve, notify
on resolve, disabled rules, per-rule templates), evaluated from logged events the way the
Celery task evaluates them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import evaluator, notify
from alerts.models import Alert, AlertRule, ConditionState, Notification
from alerts.tests.conftest import make_channel, make_rule
from containers.models import Container, Event
from healthchecks import restarts
from healthchecks.models import AutoRestartConfig

pytestmark = pytest.mark.django_db


def _evaluate(rows_or_container, type_: str, message: str = "", **data) -> Event:
    container = getattr(rows_or_container, "container", rows_or_container)
    category = type_.split(".", 1)[0]
    event = Event.objects.create(category=category, type=type_, host=container.host, container_key=container.key,
                                 message=message, data=data)
    evaluator.evaluate_event(event.pk)
    return event


def _exited_seconds_ago(container, seconds: float) -> None:
    Container.objects.filter(pk=container.pk).update(finished_at=timezone.now() - timedelta(seconds=seconds))


# ---------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------
def test_container_restarted_fires_for_a_start_soon_after_an_exit_only(rows):
    rule = make_rule("container_restarted", cooldown_seconds=0)
    _exited_seconds_ago(rows.container, 600)  # started again long after it stopped: a start, not a restart
    _evaluate(rows, "container.state", state="running", previous_state="exited")
    assert not Alert.objects.exists()
    _exited_seconds_ago(rows.container, 3)
    _evaluate(rows, "container.state", state="running", previous_state="exited", exit_code=None)
    alert = Alert.objects.get(rule=rule)
    assert alert.kind == "container_restarted" and alert.state == "open"
    assert alert.title == f"{rows.container.name} restarted on {rows.host.name}"
    # A restart is something that happened: the next start does not resolve it, it counts.
    _exited_seconds_ago(rows.container, 2)
    _evaluate(rows, "container.state", state="running", previous_state="dead")
    alert.refresh_from_db()
    assert alert.state == "open" and alert.occurrences == 2


def test_restart_loop_from_the_auto_restart_give_up_event_names_the_restarts_made(rows):
    rule = make_rule("restart_loop")
    AutoRestartConfig.objects.create(container=rows.container, max_retries=4, attempts=4, initial_delay_seconds=0)
    assert restarts.request_restart(rows.container, trigger="die", reason="exited with code 3") is None
    event = Event.objects.get(type="container.restart_loop", container_key=rows.container.key)
    assert event.data["attempts"] == 4
    evaluator.evaluate_event(event.pk)
    alert = Alert.objects.get(rule=rule)
    assert "auto-restart gave up after 4 restarts" in alert.message, alert.message
    assert "exited with code 3" in alert.message and "1 times" not in alert.message
    # Re-delivered: nothing new.
    evaluator.evaluate_event(event.pk)
    assert Alert.objects.get(rule=rule).occurrences == 1


def test_restart_loop_from_repeated_restarts_in_the_window(rows):
    rule = make_rule("restart_loop", occurrences=3, window_seconds=300)
    for _ in range(2):
        _exited_seconds_ago(rows.container, 1)
        _evaluate(rows, "container.state", state="running", previous_state="exited")
    assert not Alert.objects.exists()
    _exited_seconds_ago(rows.container, 1)
    _evaluate(rows, "container.state", state="running", previous_state="exited")
    alert = Alert.objects.get(rule=rule)
    assert "it restarted 3 times" in alert.message, alert.message


def test_update_available_fires_and_clears_when_the_update_succeeds(rows):
    rule = make_rule("update_available")
    _evaluate(rows, "update.available", image="demo/web", current_version="1.0", latest_version="1.1")
    alert = Alert.objects.get(rule=rule)
    assert alert.state == "open" and "demo/web: 1.0 → 1.1" in alert.message
    _evaluate(rows, "update.available", image="demo/web", current_version="1.0", latest_version="1.1")
    assert Alert.objects.filter(rule=rule).count() == 1
    _evaluate(rows, "update.succeeded", "web was updated", image="demo/web", from_digest="sha256:aa", to_digest="sha256:bb")
    assert Alert.objects.get(pk=alert.pk).state == "resolved"


def test_update_succeeded_fires_but_not_for_an_update_that_found_nothing_to_do(rows):
    succeeded = make_rule("update_succeeded", cooldown_seconds=0)
    available = make_rule("update_available", name="available")
    _evaluate(rows, "update.available", image="demo/web", current_version="1.0", latest_version="1.1")
    assert Alert.objects.get(rule=available).state == "open"
    # What updates/executor.py emits when the image is already the latest one.
    _evaluate(rows, "update.succeeded", f"{rows.container.name} is already up to date (demo/web)", image="demo/web",
              up_to_date=True)
    assert not Alert.objects.filter(rule=succeeded).exists()
    assert Alert.objects.get(rule=available).state == "resolved"  # it is up to date: no update is available
    _evaluate(rows, "update.succeeded", "web was updated", image="demo/web:1.1", from_digest="sha256:" + "a" * 64,
              to_digest="sha256:" + "b" * 64)
    alert = Alert.objects.get(rule=succeeded)
    assert alert.title == f"{rows.container.name} was updated" and "sha256:bbbbbbbbbbb" in alert.message


def test_update_failed_fires_from_a_rollback_with_its_reason(rows):
    rule = make_rule("update_failed")
    _evaluate(rows, "update.rolled_back", "Update of web was rolled back: the new container exited with code 1",
              image="demo/web:2.0")
    alert = Alert.objects.get(rule=rule)
    assert alert.title == f"Update of {rows.container.name} failed"
    assert "rolled back: the new container exited with code 1" in alert.message


# ---------------------------------------------------------------------------
# Rule options
# ---------------------------------------------------------------------------
def test_scope_containers_matches_only_the_chosen_containers_and_their_hosts(rows, unique):
    other = Container.objects.create(host=rows.host, container_id="c" * 64, short_id="c" * 12, name=f"other-{unique}",
                                     state="running")
    rule = make_rule("container_stopped", scope="containers")
    rule.containers.set([rows.container])
    offline = make_rule("host_offline", scope="containers", name="host of chosen")
    offline.containers.set([rows.container])
    _evaluate(other, "container.state", state="exited", previous_state="running", exit_code=1)
    assert not Alert.objects.exists()
    _evaluate(rows, "container.state", state="exited", previous_state="running", exit_code=1)
    assert list(Alert.objects.values_list("rule_id", "container_id")) == [(rule.pk, rows.container.key)]
    event = Event.objects.create(category="host", type="host.status", host=rows.host,
                                 data={"status": "offline", "previous": "online"})
    evaluator.evaluate_event(event.pk)
    assert Alert.objects.get(rule=offline).scope_id == str(rows.host.pk)


def test_without_auto_resolve_the_alert_stays_open_when_the_condition_clears(rows):
    rule = make_rule("container_stopped", auto_resolve=False)
    _evaluate(rows, "container.state", state="exited", previous_state="running", exit_code=1)
    _evaluate(rows, "container.state", state="running", previous_state="exited")
    alert = Alert.objects.get(rule=rule)
    assert alert.state == "open" and alert.resolved_at is None
    assert ConditionState.objects.get(rule=rule).first_breach_at is None  # the condition itself cleared


def test_notify_on_resolve_off_sends_the_firing_only(rows, receiver):
    hook = make_channel("webhook", name="nor", url=receiver.url("/nor"))
    rule = make_rule("container_stopped", [hook], notify_on_resolve=False)
    _evaluate(rows, "container.state", state="exited", previous_state="running", exit_code=1)
    _evaluate(rows, "container.state", state="running", previous_state="exited")
    assert Alert.objects.get(rule=rule).state == "resolved"
    notify.dispatch_due(inline=True)
    assert [r["body"]["event"] for r in receiver.on("/nor")] == ["fired"]
    assert list(Notification.objects.values_list("event", flat=True)) == ["fired"]


def test_a_disabled_rule_raises_nothing(rows, receiver):
    hook = make_channel("webhook", name="off", url=receiver.url("/off"))
    rule = make_rule("container_stopped", [hook], enabled=False)
    _evaluate(rows, "container.state", state="exited", previous_state="running", exit_code=1)
    assert not Alert.objects.exists() and not ConditionState.objects.exists()
    AlertRule.objects.filter(pk=rule.pk).update(enabled=True)
    _evaluate(rows, "container.state", state="exited", previous_state="running", exit_code=1)
    assert Alert.objects.filter(rule=rule).count() == 1


def test_a_rules_own_templates_are_what_the_receiver_gets(rows, receiver):
    hook = make_channel("webhook", name="tpl", url=receiver.url("/tpl"))
    rule = make_rule("container_stopped", [hook], title_template="[{{ severity|upper }}] {{ container }} down",
                     body_template="CUSTOM {{ container }}@{{ host }} exit={{ exit_code }} state={{ state }} rule={{ rule }}")
    _evaluate(rows, "container.state", state="exited", previous_state="running", exit_code=7)
    notify.dispatch_due(inline=True)
    [request] = receiver.on("/tpl")
    body = request["body"]
    assert body["title"] == f"[WARNING] {rows.container.name} down"
    assert body["message"] == f"CUSTOM {rows.container.name}@{rows.host.name} exit=7 state=exited rule={rule.name}"
    assert Alert.objects.get(rule=rule).message == body["message"]


def test_a_single_restart_is_no_restart_loop(rows):
    rule = make_rule("restart_loop")  # occurrences 1: only auto-restart's give-up fires it
    for _ in range(3):
        _exited_seconds_ago(rows.container, 1)
        _evaluate(rows, "container.state", state="running", previous_state="exited")
    assert not Alert.objects.filter(rule=rule).exists()
    _evaluate(rows, "container.restart_loop", "gave up", attempts=3, max_retries=3, reason="exited with code 1")
    assert Alert.objects.filter(rule=rule).count() == 1
