"""A container's logs: the follow stream (websocket) and requests read as a stream, never whole.

The engine sends stdout and stderr in frames (an 8-byte header: stream, 0, 0, 0, big-endian
size; then the payload), or raw bytes for a TTY container. Lines are cut out of the frames as
they arrive; a line is kept up to `line_limit` bytes (the rest is counted, not kept), so what
a reader holds is bounded whatever the container wrote. The callers put the byte cap on the
whole answer (containers/api/logs.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from containers.engine.errors import ENGINE_FAILURES, EngineError, wrap_error
from containers.engine.facts import parse_time


@dataclass(frozen=True)
class LogLine:
    ts: datetime | None
    stream: str
    text: str


MAX_LINE_BYTES = 16 * 1024


def _split_timestamp(raw: bytes) -> tuple[datetime | None, bytes]:
    head, sep, rest = raw.partition(b" ")
    if sep and head[:2].isdigit():
        ts = parse_time(head.decode("ascii", "replace"))
        if ts is not None:
            return ts, rest
    return None, raw


def decode_line(raw: bytes, stream: str, *, limit: int = MAX_LINE_BYTES) -> LogLine:
    """One raw log line (with the engine's timestamp prefix) → LogLine; never raises on bad bytes."""
    ts, body = _split_timestamp(raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw)
    if len(body) > limit:
        dropped = len(body) - limit
        body = body[:limit]
        text = body.decode("utf-8", "replace") + f" …[{dropped} more bytes]"
    else:
        text = body.decode("utf-8", "replace")
    return LogLine(ts=ts, stream=stream, text=text)


def _is_tty(client, container_id: str) -> bool:
    data = client.api.inspect_container(container_id)
    return bool((data.get("Config") or {}).get("Tty"))


def follow_logs(client, container_id: str, stream_name: str, *, tail: int = 0):
    """A blocking stream of raw log chunks for one of stdout/stderr; close() it to stop."""
    try:
        return client.api.logs(
            container_id, stdout=stream_name == "stdout", stderr=stream_name == "stderr",
            timestamps=True, stream=True, follow=True, tail=tail,
        )
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def container_is_tty(client, container_id: str) -> bool:
    try:
        return _is_tty(client, container_id)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


_STREAMS = {0: "stdout", 1: "stdout", 2: "stderr"}
_HEADER = struct.Struct(">BxxxL")
_CHUNK = 64 * 1024
# Room for the engine's timestamp prefix ("2024-01-01T00:00:00.123456789Z ") beyond the text.
_PREFIX_ROOM = 64


class _Pending:
    """The part of one stream's current line received so far (at most `keep` bytes kept)."""

    __slots__ = ("data", "extra")

    def __init__(self):
        self.data = bytearray()
        self.extra = 0


def make_line(raw: bytes, stream: str, limit: int, extra: int = 0) -> LogLine:
    """One line with the engine's timestamp prefix → LogLine; text cut at `limit` bytes with a
    note of how many more there were (`extra`: bytes dropped before this point)."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    ts, body = _split_timestamp(raw)
    dropped = extra + max(0, len(body) - limit)
    text = body[:limit].decode("utf-8", "replace")
    if dropped:
        text += f" …[{dropped} more bytes]"
    return LogLine(ts=ts, stream=stream, text=text)


class LogReader:
    """The lines of one logs request (stdout and stderr in the engine's order), read as they
    come. Opening raises EngineError (ContainerGone for a missing container); a failure while
    reading raises EngineError from the iteration. close() ends the request early."""

    def __init__(self, client, container_id: str, *, tail: int | None, since: datetime | None, line_limit: int):
        self.line_limit = line_limit
        self.bytes_read = 0
        self._response = None
        try:
            self.tty = container_is_tty(client, container_id)
            params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": 0, "tail": "all" if tail is None else str(tail)}
            if since is not None:
                params["since"] = f"{since.timestamp():.9f}"
            # The SDK's logs() either joins everything in memory or drops which stream a frame
            # came from: read the response ourselves.
            response = client.api._get(client.api._url("/containers/{0}/logs", container_id), params=params, stream=True)
            client.api._raise_for_status(response)
        except EngineError:
            raise
        except ENGINE_FAILURES as exc:
            raise wrap_error(exc) from exc
        self._response = response

    def close(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            try:
                response.close()
            except Exception:  # closing a half-read stream may complain; it is closed all the same
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __iter__(self) -> Iterator[LogLine]:
        try:
            yield from self._lines()
        except ENGINE_FAILURES as exc:
            raise wrap_error(exc) from exc
        finally:
            self.close()

    def _read(self, size: int) -> bytes:
        raw = self._response.raw
        parts, wanted = [], size
        while wanted > 0:
            data = raw.read(wanted)
            if not data:
                break
            parts.append(data)
            wanted -= len(data)
        data = b"".join(parts)
        self.bytes_read += len(data)
        return data

    def _chunks(self) -> Iterator[tuple[str, bytes]]:
        if self.tty:
            while data := self._read(_CHUNK):
                yield "stdout", data
            return
        while True:
            header = self._read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            stream_id, size = _HEADER.unpack(header)
            name = _STREAMS.get(stream_id, "stdout")
            while size > 0:  # a big frame is read in pieces, never whole
                data = self._read(min(size, _CHUNK))
                if not data:
                    return
                size -= len(data)
                yield name, data

    def _lines(self) -> Iterator[LogLine]:
        keep = self.line_limit + _PREFIX_ROOM
        pending: dict[str, _Pending] = {}
        for name, data in self._chunks():
            line = pending.setdefault(name, _Pending())
            start = 0
            while True:
                end = data.find(b"\n", start)
                piece = data[start:] if end < 0 else data[start:end]
                room = keep - len(line.data)
                if len(piece) > room:
                    line.data += piece[:max(room, 0)]
                    line.extra += len(piece) - max(room, 0)
                else:
                    line.data += piece
                if end < 0:
                    break
                yield make_line(bytes(line.data), name, self.line_limit, line.extra)
                pending[name] = line = _Pending()
                start = end + 1
        for name, line in pending.items():
            if line.data or line.extra:
                yield make_line(bytes(line.data), name, self.line_limit, line.extra)
