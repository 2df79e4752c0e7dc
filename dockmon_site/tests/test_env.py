"""Settings from the environment: a value that cannot be parsed, or is out of range, stops the
start-up with ImproperlyConfigured; nothing falls back to a default silently.

The helpers are called directly; whole settings are parsed in a fresh interpreter (settings
are read once per process), with the environment of a real start-up plus one bad value."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from dockmon_site import env
from testkit.testing import BASE_DIR

# ---------------------------------------------------------------------------
# The helpers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [("true", True), ("YES", True), (" on ", True), ("1", True),
                                           ("false", False), ("No", False), ("off", False), ("0", False), ("", True)])
def test_envbool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("DM_TEST_BOOL", raw)
    assert env.envbool("DM_TEST_BOOL", True) is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "enabled"])
def test_envbool_refuses_anything_else(monkeypatch, raw):
    monkeypatch.setenv("DM_TEST_BOOL", raw)
    with pytest.raises(ImproperlyConfigured, match="DM_TEST_BOOL"):
        env.envbool("DM_TEST_BOOL", False)


def test_envint_parses_and_checks_its_range(monkeypatch):
    monkeypatch.delenv("DM_TEST_INT", raising=False)
    assert env.envint("DM_TEST_INT", 7, minimum=1, maximum=10) == 7
    monkeypatch.setenv("DM_TEST_INT", " 10 ")
    assert env.envint("DM_TEST_INT", 7, minimum=1, maximum=10) == 10
    for raw, message in (("ten", "not an integer"), ("1.5", "not an integer"), ("0", "below the minimum 1"),
                         ("11", "above the maximum 10")):
        monkeypatch.setenv("DM_TEST_INT", raw)
        with pytest.raises(ImproperlyConfigured, match=message):
            env.envint("DM_TEST_INT", 7, minimum=1, maximum=10)


def test_envfloat_parses_and_checks_its_minimum(monkeypatch):
    monkeypatch.setenv("DM_TEST_FLOAT", "0.25")
    assert env.envfloat("DM_TEST_FLOAT", 1.0, minimum=0.1) == 0.25
    for raw, message in (("fast", "not a number"), ("0.01", "below the minimum")):
        monkeypatch.setenv("DM_TEST_FLOAT", raw)
        with pytest.raises(ImproperlyConfigured, match=message):
            env.envfloat("DM_TEST_FLOAT", 1.0, minimum=0.1)


def test_envchoice_takes_only_its_choices(monkeypatch):
    monkeypatch.setenv("DM_TEST_CHOICE", "Memory")
    assert env.envchoice("DM_TEST_CHOICE", "redis", ("redis", "memory")) == "memory"
    monkeypatch.setenv("DM_TEST_CHOICE", "memcached")
    with pytest.raises(ImproperlyConfigured, match="must be one of redis, memory"):
        env.envchoice("DM_TEST_CHOICE", "redis", ("redis", "memory"))


def test_envlist_splits_and_trims(monkeypatch):
    monkeypatch.setenv("DM_TEST_LIST", " a.example.test , ,b ")
    assert env.envlist("DM_TEST_LIST", ["x"]) == ["a.example.test", "b"]
    monkeypatch.delenv("DM_TEST_LIST")
    assert env.envlist("DM_TEST_LIST", ["x"]) == ["x"]


# ---------------------------------------------------------------------------
# The settings module, parsed in a fresh interpreter
# ---------------------------------------------------------------------------
_READ = "import json; from django.conf import settings; print(json.dumps({n: str(getattr(settings, n)) for n in %r}))"


def _settings(tmp_path, names=("DEBUG",), **overrides) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKMON_", "DATABASE_URL", "ALLOWED_HOSTS", "DEBUG"))}
    environment.update({"DJANGO_SETTINGS_MODULE": "dockmon_site.settings", "DOCKMON_DATA_DIR": str(tmp_path),
                        "SECRET_KEY": "settings-test-key", "STATIC_ROOT": str(tmp_path / "static")})
    environment.update(overrides)
    return subprocess.run([sys.executable, "-c", _READ % (tuple(names),)], cwd=BASE_DIR, env=environment,
                          capture_output=True, text=True, timeout=60)


def _refused(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr, result.stderr[-2000:]
    assert text in result.stderr, result.stderr[-2000:]


def test_a_plain_environment_starts_with_safe_defaults(tmp_path):
    result = _settings(tmp_path, names=("DEBUG", "ALLOWED_HOSTS", "DATABASES", "SESSION_COOKIE_SECURE"))
    assert result.returncode == 0, result.stderr[-2000:]
    values = json.loads(result.stdout)
    assert values["DEBUG"] == "False"
    # Loopback only; Django's test host is for the test runner to add, never a default.
    assert values["ALLOWED_HOSTS"] == str(["127.0.0.1", "localhost", "[::1]"])
    assert "sqlite3" in values["DATABASES"] and str(tmp_path) in values["DATABASES"]


def test_allowed_hosts_come_from_the_environment(tmp_path):
    result = _settings(tmp_path, names=("ALLOWED_HOSTS",), ALLOWED_HOSTS="dockmon.example.test, 127.0.0.1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["ALLOWED_HOSTS"] == str(["dockmon.example.test", "127.0.0.1"])


@pytest.mark.parametrize("name, value, text", [
    ("DEBUG", "perhaps", "DEBUG='perhaps' is not a boolean"),
    ("SESSION_COOKIE_SECURE", "si", "SESSION_COOKIE_SECURE='si' is not a boolean"),
    ("DOCKMON_STATS_INTERVAL_SECONDS", "ten", "DOCKMON_STATS_INTERVAL_SECONDS='ten' is not an integer"),
    ("DOCKMON_STATS_INTERVAL_SECONDS", "1", "DOCKMON_STATS_INTERVAL_SECONDS=1 is below the minimum 2"),
    ("DOCKMON_STATS_CONCURRENCY", "5000", "DOCKMON_STATS_CONCURRENCY=5000 is above the maximum 1024"),
    ("DOCKMON_BACKOFF_MAX_SECONDS", "soon", "DOCKMON_BACKOFF_MAX_SECONDS='soon' is not a number"),
    ("DOCKMON_BACKOFF_INITIAL_SECONDS", "0", "DOCKMON_BACKOFF_INITIAL_SECONDS=0.0 is below the minimum"),
    ("DOCKMON_CHANNEL_LAYER", "rabbitmq", "DOCKMON_CHANNEL_LAYER='rabbitmq' must be one of"),
    ("DOCKMON_CACHE", "memcached", "DOCKMON_CACHE='memcached' must be one of"),
    ("DB_CONN_MAX_AGE", "forever", "DB_CONN_MAX_AGE='forever' is not an integer"),
])
def test_a_bad_value_stops_the_start_up(tmp_path, name, value, text):
    extra = {"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"} if name == "DB_CONN_MAX_AGE" else {}
    _refused(_settings(tmp_path, **{name: value, **extra}), text)


@pytest.mark.parametrize("url", ["mysqlish://db/dockmon", "postgres://user@127.0.0.1:notaport/dockmon", "not a url"])
def test_a_bad_database_url_stops_the_start_up(tmp_path, url):
    _refused(_settings(tmp_path, DATABASE_URL=url), "DATABASE_URL is not usable")


def test_a_good_database_url_is_used(tmp_path):
    result = _settings(tmp_path, names=("DATABASES",), DATABASE_URL="postgres://dockmon:pw@127.0.0.1:5432/dockmon_x")
    assert result.returncode == 0, result.stderr[-2000:]
    databases = json.loads(result.stdout)["DATABASES"]
    assert "postgresql" in databases and "dockmon_x" in databases and "connect_timeout" in databases
