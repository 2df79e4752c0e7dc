"""Bridging blocking engine streams (log follow, stats stream) into asyncio consumers.

A StreamPump reads a blocking iterator in its own thread and hands each item to the event
loop; close() shuts the underlying socket so the thread ends at once (no leaked threads or
engine connections), and the owner awaits join().
"""

from __future__ import annotations

import asyncio
import logging
import threading

logger = logging.getLogger(__name__)

_pumps_alive = 0
_pumps_lock = threading.Lock()


def alive_pumps() -> int:
    """How many pump threads are running (tests check that nothing leaks)."""
    return _pumps_alive


class StreamPump:
    def __init__(self, name: str, open_stream, on_item, on_end=None):
        """open_stream() → (stream with close(), client to close); both are called in the thread.

        on_item(item) and on_end(error) are called on the event loop.
        """
        self.name = name
        self._open = open_stream
        self._on_item = on_item
        self._on_end = on_end
        self._stream = None
        self._client = None
        self._closed = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"pump {name}", daemon=True)
        self._done = asyncio.Event()

    def start(self) -> StreamPump:
        self._thread.start()
        return self

    def _post(self, func, *args) -> None:
        if not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(func, *args)
            except RuntimeError:
                pass

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
                self._post(self._on_item, item)
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
