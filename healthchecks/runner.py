"""The process-wide probe runner of a worker: a thread pool for the probes and one recorder
thread that writes their results.

Why not run a batch inside the task and wait for it: with one worker process, a batch holding
a hanging endpoint would hold the worker for that endpoint's timeout, and every check due
meanwhile would be late. Here the task only hands the probes over and returns; each probe
occupies one pool thread for at most its own timeout. Probe threads never touch the database
(so a pool of hundreds of threads does not mean hundreds of database connections): results go
through a queue to the single recorder thread. If the process dies with probes in flight, their
leases run out and the next dispatch claims them again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from healthchecks.probe import ProbeResult, probe

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_results: queue.Queue = queue.Queue()
_recorder: threading.Thread | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool, _recorder
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.DOCKMON_HEALTH_CONCURRENCY, thread_name_prefix="probe")
        if _recorder is None or not _recorder.is_alive():
            _recorder = threading.Thread(target=_record_forever, name="probe-recorder", daemon=True)
            _recorder.start()
        return _pool


def _wait_until(when: datetime | None) -> None:
    """Sleep until a check's due time (checks are claimed up to `lookahead` seconds early so
    that they start on time, not at the next dispatch tick)."""
    if when is None:
        return
    delay = (when - timezone.now()).total_seconds()
    if 0 < delay <= settings.DOCKMON_HEALTH_LOOKAHEAD_SECONDS + 1:
        time.sleep(delay)


def _run(job) -> tuple[datetime, ProbeResult]:
    _wait_until(job.scheduled_at)
    started_at = timezone.now()
    return started_at, probe(job.spec)


def _run_and_queue(job) -> None:
    try:
        started_at, result = _run(job)
    except Exception:  # probe() does not raise; this is a bug, keep the runner alive
        logger.exception("health check %s crashed", job.check_id)
        return
    _results.put((job, started_at, result))


def submit(jobs) -> None:
    pool = _executor()
    for job in jobs:
        pool.submit(_run_and_queue, job)


def run_now(jobs) -> list:
    """Run the jobs concurrently and wait for them: [(job, started_at, result)]."""
    pool = _executor()
    futures = [(job, pool.submit(_run, job)) for job in jobs]
    return [(job, *future.result()) for job, future in futures]


def _record_forever() -> None:
    from healthchecks import services

    while True:
        job, started_at, result = _results.get()
        try:
            close_old_connections()
            services.record(job.check_id, job.owner, result, started_at=started_at, scheduled_at=job.scheduled_at)
        except Exception:  # the database may be restarting: the lease runs out and the check runs again
            logger.exception("could not record the result of health check %s", job.check_id)
        finally:
            _results.task_done()


def drain(timeout: float = 30.0) -> bool:
    """Wait until every queued result is written (tests and benchmarks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _results.unfinished_tasks == 0:
            return True
        time.sleep(0.01)
    return False
