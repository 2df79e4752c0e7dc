"""The process-wide probe runner of a worker: a thread pool for the probes and one recorder
thread that writes their results.

Why not run a batch inside the task and wait for it: with one worker process, a batch holding
a hanging endpoint would hold the worker for that endpoint's timeout, and every check due
meanwhile would be late. Here the task only hands the probes over and returns; each probe
occupies one pool thread for at most its own timeout. Probe threads do not keep database
connections (so a pool of hundreds of threads does not mean hundreds of them): results go
through a queue to the single recorder thread, and the outbound policy's list of registered
engines is read by the task before it hands the probes over (a probe thread that finds it
stale re-reads it and closes the connection again). If the process dies with probes in flight, their
leases run out and the next dispatch claims them again.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections, connection
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


def _delay(when: datetime | None) -> float:
    """Seconds until a check's due time (checks are claimed up to `lookahead` seconds early so
    that they start on time, not at the next dispatch tick); 0 when due or far off."""
    if when is None:
        return 0.0
    delay = (when - timezone.now()).total_seconds()
    return delay if 0 < delay <= settings.DOCKMON_HEALTH_LOOKAHEAD_SECONDS + 1 else 0.0


def _run(job, *, wait: bool = False) -> tuple[datetime, ProbeResult]:
    if wait:
        time.sleep(_delay(job.scheduled_at))
    started_at = timezone.now()
    return started_at, probe(job.spec)


def _run_and_queue(job) -> None:
    try:
        started_at, result = _run(job)
    except Exception:  # probe() does not raise; this is a bug, keep the runner alive
        logger.exception("health check %s crashed", job.check_id)
        return
    _results.put((job, started_at, result))


# Jobs claimed early wait here, not in a pool thread: a thread sleeping until its check is due
# is a thread a hanging endpoint elsewhere cannot use.
_timer_lock = threading.Condition()
_timers: list = []
_timer_seq = itertools.count()
_timer_thread: threading.Thread | None = None


def _release_due_forever() -> None:
    while True:
        with _timer_lock:
            while not _timers:
                _timer_lock.wait()
            wait = _timers[0][0] - time.monotonic()
            if wait > 0:
                _timer_lock.wait(wait)
                continue
            due = []
            while _timers and _timers[0][0] <= time.monotonic():
                due.append(heapq.heappop(_timers)[2])
        pool = _executor()
        for job in due:
            pool.submit(_run_and_queue, job)


def submit(jobs) -> None:
    global _timer_thread
    pool = _executor()
    for job in jobs:
        delay = _delay(job.scheduled_at)
        if delay <= 0:
            pool.submit(_run_and_queue, job)
            continue
        with _timer_lock:
            if _timer_thread is None or not _timer_thread.is_alive():
                _timer_thread = threading.Thread(target=_release_due_forever, name="probe-timer", daemon=True)
                _timer_thread.start()
            heapq.heappush(_timers, (time.monotonic() + delay, next(_timer_seq), job))
            _timer_lock.notify()


def run_now(jobs) -> list:
    """Run the jobs concurrently and wait for them: [(job, started_at, result)]."""
    pool = _executor()
    futures = [(job, pool.submit(_run, job, wait=True)) for job in jobs]
    return [(job, *future.result()) for job, future in futures]


RECORD_BATCH = 200
IDLE_CLOSE_SECONDS = 5.0
_CLOSE = object()


def _record_forever() -> None:
    """Write results as they come, many per transaction when they come fast (one commit and a
    few set-based statements per batch instead of several statements per result)."""
    from healthchecks import services

    while True:
        try:
            first = _results.get(timeout=IDLE_CLOSE_SECONDS)
        except queue.Empty:
            connection.close()  # idle: do not hold a database connection (and its locks) for nothing
            continue
        if first is _CLOSE:
            connection.close()
            _results.task_done()
            continue
        items = [first]
        while len(items) < RECORD_BATCH:
            try:
                items.append(_results.get_nowait())
            except queue.Empty:
                break
        outcomes = [services.Outcome(job.check_id, job.owner, result, started_at, job.scheduled_at)
                    for job, started_at, result in items]
        try:
            close_old_connections()
            try:
                services.record_many(outcomes)
            except Exception:
                # One bad item must not lose the others: write them one by one.
                logger.exception("batch of %d health results failed; recording them one by one", len(items))
                for outcome in outcomes:
                    try:
                        services.record_many([outcome])
                    except Exception:  # the database may be restarting: the lease runs out and the check runs again
                        logger.exception("could not record the result of health check %s", outcome.check_id)
        finally:
            for _ in items:
                _results.task_done()


def close_db(timeout: float = 30.0) -> None:
    """Have the recorder thread close its database connection (tests: before the test database
    is dropped)."""
    if _recorder is not None and _recorder.is_alive():
        _results.put(_CLOSE)
        drain(timeout)


def drain(timeout: float = 30.0) -> bool:
    """Wait until every queued result is written (tests and benchmarks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _results.unfinished_tasks == 0:
            return True
        time.sleep(0.01)
    return False
