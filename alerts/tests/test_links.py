"""Links back to DockMon in notifications: DOCKMON_PUBLIC_URL when set, else derived from
ALLOWED_HOSTS and PORT, with a system-check warning where that guess may be wrong."""

from __future__ import annotations

import pytest

from alerts import checks, evaluator, notify, templating
from alerts.models import Alert
from alerts.tests.conftest import make_channel, make_rule
from containers.models import Event


def _ids():
    return [w.id for w in checks.public_url_check()]


def test_the_setting_wins(settings):
    settings.DOCKMON_PUBLIC_URL = "https://dockmon.example.test/"
    assert templating.link("/alerts/") == "https://dockmon.example.test/alerts/"
    assert _ids() == []
    settings.DOCKMON_PUBLIC_URL = "dockmon.example.test"
    assert _ids() == ["alerts.W002"]


def test_without_it_links_use_allowed_hosts_and_port(settings, monkeypatch):
    settings.DOCKMON_PUBLIC_URL = ""
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]
    monkeypatch.delenv("PORT", raising=False)
    assert templating.link("/containers/k/") == "http://127.0.0.1:8000/containers/k/"
    assert _ids() == []  # `make run` on this machine: the guess is right, no warning
    monkeypatch.setenv("PORT", "9123")
    assert templating.link("/x/") == "http://127.0.0.1:9123/x/"
    # A deployment's own name comes first, whatever its place in the list; it gets a warning.
    settings.ALLOWED_HOSTS = ["localhost", "dockmon.example.test"]
    assert templating.base_url() == "http://dockmon.example.test:9123"
    assert _ids() == ["alerts.W001"]
    settings.SESSION_COOKIE_SECURE = True
    monkeypatch.setenv("PORT", "443")
    assert templating.base_url() == "https://dockmon.example.test"
    settings.ALLOWED_HOSTS = ["*", ".example.test"]
    assert templating.link("/x/") == "/x/" and _ids() == ["alerts.W001"]


@pytest.mark.django_db
def test_a_notification_carries_an_absolute_link(rows, receiver, settings, monkeypatch):
    settings.DOCKMON_PUBLIC_URL = ""
    settings.ALLOWED_HOSTS = ["127.0.0.1", "testserver"]
    monkeypatch.setenv("PORT", "8111")
    hook = make_channel("webhook", name="link", url=receiver.url("/link"))
    make_rule("container_stopped", [hook])
    evaluator.evaluate_event(Event.objects.create(category="container", type="container.state", host=rows.host,
                                                  container_key=rows.container.key,
                                                  data={"state": "exited", "previous_state": "running", "exit_code": 1}).pk)
    notify.dispatch_due(inline=True)
    [request] = receiver.on("/link")
    assert request["body"]["link"] == f"http://127.0.0.1:8111/containers/{rows.container.key}/"
    assert Alert.objects.get().context["link"] == request["body"]["link"]
