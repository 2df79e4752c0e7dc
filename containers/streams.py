"""Bridging blocking engine streams (log follow, stats stream) into asyncio consumers.

A StreamPump reads a blocking iterator in its own thread and hands each item to the event
loop; close() shuts the underlying socket so the thread ends at once (no leaked threads or
engine connections), and the owner awaits join().

A pump may be given a ByteBudget: the bytes it has handed to the loop and that have not been
passed on to the client yet count against the budget (the consumer releases them once sent).
When the budget stays full for `wait` seconds the pump ends with SlowClient: nothing piles up
in the web process behind a client (or an event loop) that does not keep up with the engine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

logger = logging.getLogger(__name__)

_pumps_alive = 0
_pumps_lock = threading.Lock()


def alive_pumps() -> int:
    """How many pump threads are running (tests check that nothing leaks)."""
    return _pumps_alive


class SlowClient(Exception):
    """The bytes waiting for the client stayed at the budget's limit too long."""


class ByteBudget:
    """A thread-safe count of bytes in flight, bounded by `limit` (shared by a socket's pumps)."""

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self.used = 0
        self._cond = threading.Condition()

    def acquire(self, size: int, wait: float, cancelled: threading.Event | None = None) -> int:
        """Take `size` bytes (at most the whole limit); blocks up to `wait` s for room.

        Returns what was taken (to be released later); raises SlowClient when there was no room
        in time; 0 when `cancelled` was set meanwhile (nothing taken)."""
        size = min(max(size, 1), self.limit)
        deadline = time.monotonic() + wait
        with self._cond:
            while self.used + size > self.limit:
                if cancelled is not None and cancelled.is_set():
                    return 0
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SlowClient(f"{self.used} bytes were waiting for the client for {wait:g} s")
                self._cond.wait(min(left, 0.2))
            self.used += size
            return size

    def release(self, size: int) -> None:
        if size <= 0:
            return
        with self._cond:
            self.used = max(0, self.used - size)
            self._cond.notify_all()


class StreamPump:
    def __init__(self, name: str, open_stream, on_item, on_end=None, *, budget: ByteBudget | None = None, budget_wait: float = 2.0):
        """open_stream() → (stream with close(), client to close); both are called in the thread.

        on_item(item) and on_end(error) are called on the event loop. With a budget, on_item is
        called as on_item(item, credit): `credit` bytes of the budget, for the caller to release.
        """
        self.name = name
        self._open = open_stream
        self._on_item = on_item
        self._on_end = on_end
        self._budget = budget
        self._budget_wait = budget_wait
        self._stream = None
        self._client = None
        self._closed = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"pump {name}", daemon=True)
        self._done = asyncio.Event()

    def start(self) -> StreamPump:
        self._thread.start()
        return self

    def _post(self, func, *args) -> bool:
        if not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(func, *args)
                return True
            except RuntimeError:
                pass
        return False

    def _run(self) -> None:
        global _pumps_alive
        with _pumps_lock:
            _pumps_alive += 1
        error = None
        try:
            self._stream, self._client = self._open()
            if self._closed.is_set():
                return
            for item in self._stream:
                if self._closed.is_set():
                    break
                if self._budget is None:
                    self._post(self._on_item, item)
                    continue
                credit = self._budget.acquire(len(item) if isinstance(item, (bytes, str)) else 1, self._budget_wait, self._closed)
                if not credit:
                    break  # closed while waiting for room
                if not self._post(self._on_item, item, credit):
                    self._budget.release(credit)
        except SlowClient as exc:
            error = exc
        except Exception as exc:  # a cut stream raises from deep inside urllib3
            if not self._closed.is_set():
                error = exc
        finally:
            self._release()
            with _pumps_lock:
                _pumps_alive -= 1
            if self._on_end is not None:
                self._post(self._on_end, error)
            self._post(self._done.set)

    def _release(self) -> None:
        for thing in (self._stream, self._client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass

    def close(self) -> None:
        self._closed.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()  # shuts the socket down: the blocked read returns at once
            except Exception:
                pass

    async def join(self, timeout: float = 5.0) -> bool:
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
            return True
        except TimeoutError:
            logger.warning("stream pump %s did not stop within %ss", self.name, timeout)
            return False
