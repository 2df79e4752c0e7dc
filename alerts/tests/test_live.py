"""End to end against a real engine: the real monitor process records what the container does,
evaluation and delivery run inline (Celery eager) in that process, and a local receiver stands
in for the notification services."""

from __future__ import annotations

import pytest

from alerts.choices import HistoryAction
from alerts.models import Alert, AlertHistory, ConditionState, Notification
from alerts.tests.conftest import make_channel, make_rule
from containers.models import Container, DockerHost
from testkit.relay import TcpRelay
from testkit.testing import wait_for

TRAP = 'trap "exit 0" TERM; while true; do sleep 1; done'


def _online(host):
    wait_for(lambda: DockerHost.objects.filter(pk=host.pk, status="online").exists(), timeout=30, message="host online")


@pytest.mark.django_db(transaction=True)
def test_a_stopped_container_fires_one_alert_one_notification_per_channel_resolves_and_respects_the_cooldown(
    alpha, make_host, monitor, receiver, containers_to_remove, unique
):
    host = make_host(alpha)
    hook = make_channel("webhook", name=f"hook-{unique}", url=receiver.url("/hook"), headers={"X-Secret": "s3cr3t"})
    slack = make_channel("slack", name=f"slack-{unique}", webhook_url="https://hooks.slack.com/services/T0/B0/XX", base_url=receiver.url("/"))
    rule = make_rule("container_stopped", [hook, slack], cooldown_seconds=3600, name_regex=f"^al-live-{unique}$")
    monitor(CELERY_TASK_ALWAYS_EAGER="true")
    _online(host)
    name = f"al-live-{unique}"
    containers_to_remove.append((alpha, name))
    cid = alpha.docker("run", "-d", "--network", "none", "--name", name, "dockmon/busybox:latest", "sh", "-c", TRAP).stdout.strip()
    key = f"{host.pk}:{cid[:12]}"
    wait_for(lambda: Container.objects.filter(pk=key, state="running").exists(), timeout=30, message="running")

    alpha.docker("stop", "-t", "5", name)
    alert = wait_for(lambda: Alert.objects.filter(container_id=key, state="open").first(), timeout=30, message="alert fired")
    wait_for(lambda: len(receiver.requests) >= 2, timeout=20, message="two notifications")
    assert alert.kind == "container_stopped" and alert.rule_id == rule.pk and alert.occurrences == 1
    assert alert.dedup_key == f"{rule.pk}|container_stopped|container:{key}"
    assert "exit code 0" in alert.message and name in alert.title
    [to_hook] = receiver.on("/hook")
    assert to_hook["headers"]["X-Secret"] == "s3cr3t"
    assert to_hook["body"]["event"] == "fired" and to_hook["body"]["alert"]["kind"] == "container_stopped"
    assert to_hook["body"]["alert"]["container"] == key and name in to_hook["body"]["title"]
    [to_slack] = receiver.on("/services/T0/B0/XX")
    assert name in to_slack["body"]["text"]

    alpha.docker("start", name)
    wait_for(lambda: Alert.objects.filter(pk=alert.pk, state="resolved").exists(), timeout=30, message="resolved on start")
    wait_for(lambda: len(receiver.requests) >= 4, timeout=20, message="resolve notifications")
    resolved = [r for r in receiver.on("/hook") if r["body"]["event"] == "resolved"]
    assert len(resolved) == 1 and resolved[0]["body"]["title"].startswith("Resolved:")
    assert len(receiver.on("/services/T0/B0/XX")) == 2

    # A second stop within the cooldown: the same alert, one more occurrence, nothing sent.
    alpha.docker("stop", "-t", "5", name)
    wait_for(lambda: Alert.objects.filter(pk=alert.pk, state="open", occurrences=2).exists(), timeout=30, message="reopened")
    assert Alert.objects.filter(container_id=key).count() == 1
    assert AlertHistory.objects.filter(alert=alert, action=HistoryAction.COOLDOWN).exists()
    # Notifications are queued in the same transaction as the reopening: none was.
    assert Notification.objects.filter(alert=alert).count() == 4
    assert set(Notification.objects.filter(alert=alert).values_list("status", flat=True)) == {"sent"}
    assert len(receiver.requests) == 4


@pytest.mark.django_db(transaction=True)
def test_a_cpu_hog_fires_cpu_high_only_after_the_duration_and_resolves_when_it_stops(
    eager, alpha, make_host, sync_container, receiver, containers_to_remove, unique
):
    from containers import stats

    host = make_host(alpha)
    DockerHost.objects.filter(pk=host.pk).update(status="online")
    hook = make_channel("webhook", name=f"cpu-{unique}", url=receiver.url("/cpu"))
    rule = make_rule("cpu_high", [hook], threshold=20, duration_seconds=3, cooldown_seconds=0, name_regex=f"^al-hog-{unique}$")
    name = f"al-hog-{unique}"
    containers_to_remove.append((alpha, name))
    cid = alpha.docker("run", "-d", "--network", "none", "--name", name, "dockmon/busybox:latest",
                       "sh", "-c", "while :; do :; done").stdout.strip()
    container = sync_container(host, cid)
    subject = f"container:{container.key}"

    def breach_started():
        stats.collect_host(host.pk)
        return ConditionState.objects.filter(rule=rule, subject=subject, first_breach_at__isnull=False).first()

    state = wait_for(breach_started, timeout=60, interval=0.5, message="the CPU breach recorded")
    # The breach has begun but has not lasted the duration yet: no alert.
    assert not Alert.objects.filter(rule=rule).exists()
    assert state.last_value > 20

    def fired():
        stats.collect_host(host.pk)
        return Alert.objects.filter(rule=rule, state="open").first()

    alert = wait_for(fired, timeout=60, interval=0.5, message="cpu_high fired")
    assert (alert.first_seen_at - state.first_breach_at).total_seconds() >= 3
    assert alert.value > 20 and alert.container_id == container.key
    wait_for(lambda: len(receiver.on("/cpu")) == 1, timeout=10, message="fired notification")
    assert receiver.on("/cpu")[0]["body"]["alert"]["kind"] == "cpu_high"

    alpha.docker("rm", "-f", name)

    def resolved():
        stats.collect_host(host.pk)
        return Alert.objects.filter(pk=alert.pk, state="resolved").exists()

    wait_for(resolved, timeout=60, interval=0.5, message="resolved after the hog stopped")
    wait_for(lambda: len(receiver.on("/cpu")) == 2, timeout=10, message="resolve notification")
    assert receiver.on("/cpu")[1]["body"]["event"] == "resolved"
    assert Alert.objects.filter(rule=rule).count() == 1


# ---------------------------------------------------------------------------
# Auto-restart gives up -> restart_loop; the monitor loses a host -> host_offline
# ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_container_that_keeps_dying_ends_in_a_restart_loop_alert_and_notification(
    eager, alpha, make_host, monitor, receiver, containers_to_remove, unique
):
    from containers.models import Event
    from healthchecks import tasks as health_tasks
    from healthchecks.models import AutoRestartConfig, RestartAttempt

    host = make_host(alpha)
    name = f"al-crashy-{unique}"
    hook = make_channel("webhook", name=f"loop-{unique}", url=receiver.url("/loop"))
    rule = make_rule("restart_loop", [hook], name_regex=f"^{name}$", severity="error")
    monitor(CELERY_TASK_ALWAYS_EAGER="true")
    _online(host)
    containers_to_remove.append((alpha, name))
    cid = alpha.docker("create", "--network", "none", "--name", name, "dockmon/busybox:latest", "sh", "-c", "sleep 1; exit 3").stdout.strip()
    key = f"{host.pk}:{cid[:12]}"
    wait_for(lambda: Container.objects.filter(pk=key).exists(), timeout=30, message="container recorded by the monitor")
    AutoRestartConfig.objects.create(container_id=key, max_retries=2, initial_delay_seconds=0.2, backoff_factor=2, max_delay_seconds=5)
    alpha.docker("start", name)

    def driven():
        # Beat's periodic task, run here: it starts each restart that is due (the monitor
        # records each death and schedules the next one, or gives up).
        health_tasks.run_due_restarts()
        return Alert.objects.filter(rule=rule, container_id=key).first()

    alert = wait_for(driven, timeout=90, interval=0.3, message="restart_loop alert after auto-restart gave up")
    assert RestartAttempt.objects.filter(container_id=key, status="succeeded").count() == 2
    give_up = Event.objects.get(type="container.restart_loop", container_key=key)
    assert give_up.data["attempts"] == 2
    assert alert.kind == "restart_loop" and alert.severity == "error" and alert.occurrences == 1
    assert "auto-restart gave up after 2 restarts" in alert.message and "exited with code 3" in alert.message
    [request] = wait_for(lambda: receiver.on("/loop"), timeout=20, message="the notification at the receiver")
    body = request["body"]
    assert body["event"] == "fired" and body["alert"]["kind"] == "restart_loop" and body["alert"]["container"] == key
    assert body["message"] == alert.message and name in body["title"]
    # Left alone afterwards: no further restart, no second alert or notification.
    health_tasks.run_due_restarts()
    assert RestartAttempt.objects.filter(container_id=key).count() == 2
    assert Alert.objects.filter(rule=rule).count() == 1 and len(receiver.on("/loop")) == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_monitor_losing_a_host_fires_host_offline_and_its_return_resolves_it(alpha, monitor, receiver, unique):
    from urllib.parse import urlsplit

    relay = TcpRelay(("127.0.0.1", urlsplit(alpha.tcp_url).port))
    relay.up()
    try:
        host = DockerHost.objects.create(name=f"al-relay-{unique}", url=f"tcp://127.0.0.1:{relay.port}")
        hook = make_channel("webhook", name=f"off-{unique}", url=receiver.url("/offline"))
        rule = make_rule("host_offline", [hook], scope="hosts", severity="critical")
        rule.hosts.set([host])
        monitor(CELERY_TASK_ALWAYS_EAGER="true")
        _online(host)
        assert not Alert.objects.filter(rule=rule).exists()

        relay.down()  # the host drops off the network
        alert = wait_for(lambda: Alert.objects.filter(rule=rule, state="open").first(), timeout=60, message="host_offline fired")
        assert DockerHost.objects.get(pk=host.pk).status == "offline"
        assert alert.scope_type == "host" and alert.host_id == host.pk and alert.dedup_key == f"{rule.pk}|host_offline|host:{host.pk}"
        assert alert.title == f"Host {host.name} is offline"
        [fired] = wait_for(lambda: receiver.on("/offline"), timeout=20, message="offline notification")
        assert fired["body"]["event"] == "fired" and fired["body"]["alert"]["host"] == str(host.pk)

        relay.up()  # back
        wait_for(lambda: Alert.objects.filter(pk=alert.pk, state="resolved").exists(), timeout=60, message="resolved when back online")
        assert DockerHost.objects.get(pk=host.pk).status == "online"
        wait_for(lambda: len(receiver.on("/offline")) == 2, timeout=20, message="resolve notification")
        assert [r["body"]["event"] for r in receiver.on("/offline")] == ["fired", "resolved"]
        assert Alert.objects.filter(rule=rule).count() == 1
    finally:
        relay.down()
