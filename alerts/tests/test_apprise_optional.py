"""Apprise is an optional extra (requirements-apprise.txt): without it DockMon starts and works, a
channel of the `apprise` kind is refused at save time with a clear 400, and one stored while it was
installed fails for good without sending anything. The package's absence is injected by making
its import fail (sys.modules["apprise"] = None), as on an install of requirements.txt alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from alerts import notify
from alerts.models import NotificationChannel
from alerts.tests.conftest import make_channel
from alerts.transports.apprise_url import NOT_INSTALLED
from testkit import testing

pytestmark = pytest.mark.django_db


@pytest.fixture
def without_apprise(monkeypatch):
    monkeypatch.setitem(sys.modules, "apprise", None)


def _create(client, name, kind, config):
    return client.post("/api/v1/notification-channels/", {"name": name, "kind": kind, "config": config}, format="json")


def test_an_apprise_channel_is_accepted_while_apprise_is_installed(admin_client, receiver):
    response = _create(admin_client, "with-apprise", "apprise", {"url": f"json://127.0.0.1:{receiver.port}/a"})
    assert response.status_code == 201, response.content


def test_without_apprise_an_apprise_channel_is_a_400_that_says_so_and_other_kinds_still_work(admin_client, receiver, without_apprise):
    response = _create(admin_client, "no-apprise", "apprise", {"url": f"json://127.0.0.1:{receiver.port}/a"})
    assert response.status_code == 400, response.content
    assert NOT_INSTALLED in str(response.json()["config"]["url"])
    assert "apprise is not installed" in NOT_INSTALLED
    assert not NotificationChannel.objects.filter(name="no-apprise").exists()
    webhook = _create(admin_client, "still-fine", "webhook", {"url": receiver.url("/hook")})
    assert webhook.status_code == 201, webhook.content


def test_a_stored_apprise_channel_fails_for_good_and_sends_nothing_once_apprise_is_gone(receiver, monkeypatch):
    """GIVEN an apprise channel saved (and working) while apprise was installed
    WHEN apprise is no longer installed and a notification goes out on it
    THEN the delivery fails as permanent, saying why, and nothing reaches the receiver."""
    channel = make_channel("apprise", name="was-installed", url=f"json://127.0.0.1:{receiver.port}/a")
    assert notify.send_test(channel)["ok"]
    sent = len(receiver.requests)
    monkeypatch.setitem(sys.modules, "apprise", None)
    result = notify.send_test(NotificationChannel.objects.get(pk=channel.pk))
    assert result["ok"] is False and result["permanent"] and "apprise is not installed" in result["error"], result
    assert len(receiver.requests) == sent


def test_dockmon_starts_and_passes_its_checks_without_apprise():
    """A separate interpreter in which apprise cannot be imported: Django starts, every app and
    URL loads, `manage.py check` passes, and the apprise transport reports itself missing."""
    code = (
        "import sys; sys.modules['apprise'] = None\n"
        "import django; django.setup()\n"
        "from django.core.management import call_command; call_command('check', fail_level='ERROR')\n"
        "from django.urls import resolve; resolve('/api/v1/notification-channels/'); resolve('/')\n"
        "from alerts.transports import TRANSPORTS, transport_class\n"
        "[transport_class(kind) for kind in TRANSPORTS]\n"
        "print(transport_class('apprise').validate({'url': 'json://127.0.0.1/x'})['url'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=testing.subprocess_env(), cwd=testing.BASE_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert NOT_INSTALLED in result.stdout
