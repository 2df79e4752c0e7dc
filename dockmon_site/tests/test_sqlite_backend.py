"""The SQLite backend's wait for the write lock (dockmon_site/sqlite): a transaction that finds
another process's writer holding the lock starts as soon as it is let go, gives up with SQLite's
own error after the configured timeout, and leaves SQLite's busy handler as configured."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from django.db import OperationalError, connection, transaction

from containers.models import Tag

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock")
    return connection.settings_dict["NAME"]


@pytest.fixture
def other_writer(sqlite_only):
    """Another process's connection that takes the write lock and holds it until let go."""
    raw = sqlite3.connect(sqlite_only, timeout=5, isolation_level=None, check_same_thread=False)
    yield raw
    if raw.in_transaction:
        raw.execute("ROLLBACK")
    raw.close()


def busy_timeout() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        return cursor.fetchone()[0]


def test_a_transaction_waits_for_another_writer_and_starts_once_it_is_let_go(other_writer):
    from django.db import connections

    from dockmon_site.sqlite.base import DatabaseWrapper

    assert isinstance(connections["default"], DatabaseWrapper)  # settings pick this backend
    configured = busy_timeout()
    other_writer.execute("BEGIN IMMEDIATE")
    other_writer.execute("INSERT INTO containers_tag (name, color) VALUES ('held', '')")
    released = threading.Timer(0.5, lambda: other_writer.execute("COMMIT"))
    released.start()
    try:
        with transaction.atomic():
            Tag.objects.create(name="after")
            assert not other_writer.in_transaction  # it only got here once the other writer was done
    finally:
        released.cancel()
    assert set(Tag.objects.values_list("name", flat=True)) == {"held", "after"}
    assert busy_timeout() == configured == 30_000


def test_a_writer_that_never_lets_go_ends_in_sqlites_error_after_the_timeout(other_writer, monkeypatch):
    connection.ensure_connection()  # a new connection would read the configured timeout again
    monkeypatch.setattr(connection, "_busy_timeout_ms", 300)
    other_writer.execute("BEGIN IMMEDIATE")
    with pytest.raises(OperationalError, match="locked"):
        with transaction.atomic():
            Tag.objects.create(name="never")
    other_writer.execute("ROLLBACK")
    try:
        assert not Tag.objects.filter(name="never").exists()
        assert busy_timeout() == 300
    finally:
        connection.close()  # the next test's connection gets the configured timeout again
