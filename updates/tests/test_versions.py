from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from updates.choices import TrackingMode
from updates.schedule import parse_cron
from updates.versions import newest_allowed, parse_version

TAGS = ["1.2.2", "1.2.3", "1.2.4", "1.3.0", "1.3.1-rc1", "2.0.0", "2.0.0-beta.1", "latest", "1.2.4-alpine", "v1.9.9", "1.2"]


@pytest.mark.parametrize(
    ("mode", "pre", "expected"),
    [
        (TrackingMode.EXACT, False, None),
        (TrackingMode.PATCH, False, "1.2.4"),
        (TrackingMode.MINOR, False, "1.3.0"),
        (TrackingMode.MINOR, True, "1.3.1-rc1"),
        (TrackingMode.MAJOR, False, "2.0.0"),
        (TrackingMode.LATEST, False, "2.0.0"),
    ],
)
def test_newest_allowed_from_1_2_3(mode, pre, expected):
    best = newest_allowed("1.2.3", TAGS, mode, pre)
    assert (best.tag if best else None) == expected


def test_never_a_downgrade_nor_the_same_version():
    assert newest_allowed("1.2.3", ["1.2.2", "1.2.3", "1.0.0", "0.9.9"], TrackingMode.MAJOR) is None
    assert newest_allowed("2.0.0", ["1.9.9", "2.0.0-rc1"], TrackingMode.LATEST, include_prerelease=True) is None


def test_the_tag_scheme_is_kept():
    tags = ["1.25.3-alpine", "1.25.4", "1.26.0-alpine", "1.25.4-alpine-slim", "v1.25.9-alpine", "1.25.5-alpine"]
    assert newest_allowed("1.25.3-alpine", tags, TrackingMode.PATCH).tag == "1.25.5-alpine"
    assert newest_allowed("1.25.3-alpine", tags, TrackingMode.MINOR).tag == "1.26.0-alpine"
    assert newest_allowed("v1.2.3", ["v1.2.4", "1.2.5"], TrackingMode.PATCH).tag == "v1.2.4"
    # Two-number tags stay two-number tags; patch mode has nothing to move.
    assert newest_allowed("1.25", ["1.26", "1.25.9", "2.0"], TrackingMode.MINOR).tag == "1.26"
    assert newest_allowed("1.25", ["1.26"], TrackingMode.PATCH) is None
    assert newest_allowed("16", ["17", "16.1", "18-alpine"], TrackingMode.MAJOR).tag == "17"


def test_prerelease_ordering_and_a_prerelease_moving_to_its_release():
    assert newest_allowed("1.3.0-rc1", ["1.3.0-rc2", "1.3.0", "1.3.0-beta.9"], TrackingMode.PATCH).tag == "1.3.0"
    assert newest_allowed("1.3.0-rc1", ["1.3.0-rc2", "1.3.0-beta.9"], TrackingMode.PATCH, include_prerelease=True).tag == "1.3.0-rc2"


@pytest.mark.parametrize("tag", ["latest", "stable", "alpine", "20240101", "sha-abc123", "alpine3.18", "1.2.3x"])
def test_non_version_tags(tag):
    assert parse_version(tag) is None


def test_cron_parsing_is_strict():
    schedule = parse_cron("0 4 * * *")
    assert schedule.hour == {4} and schedule.minute == {0}
    assert parse_cron("*/15 1-5 * * mon-fri").day_of_week == {1, 2, 3, 4, 5}
    for bad in ["", "0 4 * *", "0 4 * * * *", "61 4 * * *", "0 25 * * *", "0 4 * * funday", "0 4; * * *"]:
        with pytest.raises(ValueError):
            parse_cron(bad)


def test_a_bad_cron_setting_stops_dockmon(monkeypatch, settings):
    """The settings keep DOCKMON_UPDATE_CHECK_CRON as text (they import no app); a bad expression
    fails the system checks (migrate, which the web role runs first) and the start of a worker or
    beat, each naming the setting."""
    import importlib

    import dockmon_site.settings as settings_module
    from dockmon_site import celery as celery_module

    monkeypatch.setenv("DOCKMON_UPDATE_CHECK_CRON", "0 99 * * *")
    importlib.reload(settings_module)
    settings.DOCKMON_UPDATE_CHECK_CRON = settings_module.DOCKMON_UPDATE_CHECK_CRON
    with pytest.raises(SystemCheckError, match="DOCKMON_UPDATE_CHECK_CRON"):
        call_command("check")
    with pytest.raises(ImproperlyConfigured, match="DOCKMON_UPDATE_CHECK_CRON"):
        celery_module.resolve_schedules(sender=celery_module.app)
    monkeypatch.delenv("DOCKMON_UPDATE_CHECK_CRON")
    importlib.reload(settings_module)
    settings.DOCKMON_UPDATE_CHECK_CRON = settings_module.DOCKMON_UPDATE_CHECK_CRON
    call_command("check")
    celery_module.resolve_schedules(sender=celery_module.app)
    entry = celery_module.app.conf.beat_schedule["check-updates"]
    assert entry["task"] == "updates.tasks.check_updates" and entry["options"]["expires"] > 0
    assert entry["schedule"] == parse_cron("0 4 * * *")
