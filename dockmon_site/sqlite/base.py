"""Django's SQLite backend, with a fair wait for the write lock.

Several processes write to one SQLite file (monitor, worker, web). A transaction here takes the
write lock at BEGIN IMMEDIATE; when another process holds it, SQLite's own busy handler sleeps
in growing steps (1, 2, 5 ... 100 ms) and keeps missing the short gaps between a busy writer's
transactions: the monitor's event write could wait hundreds of milliseconds behind a worker that
raises two hundred alerts in a row, and the browser with it. This wrapper starts a transaction
with SQLite's handler off and retries BEGIN IMMEDIATE every millisecond instead, so a waiting
writer gets the lock in the first gap. Statements outside a transaction keep SQLite's handler
(the `timeout` option), and so does the total wait: after `timeout` seconds the error stands.
"""

from __future__ import annotations

import time

from django.db import OperationalError
from django.db.backends.sqlite3 import base

RETRY_SECONDS = 0.001


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        self._busy_timeout_ms = int(float(params.get("timeout", 5)) * 1000)
        return params

    def _start_transaction_under_autocommit(self):
        if self.transaction_mode != "IMMEDIATE":
            return super()._start_transaction_under_autocommit()
        timeout_ms = getattr(self, "_busy_timeout_ms", 5000)
        deadline = time.monotonic() + timeout_ms / 1000
        cursor = self.cursor()
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                    return
                except OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(RETRY_SECONDS)
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
