"""GET /api/v1/containers/{key}/logs/: a container's last lines as JSON, or as a text download.

Both read the engine's answer as a stream (containers.engine.logs) under a byte cap, so no
request builds an unbounded answer in memory:
- JSON keeps the newest lines whose text fits in DOCKMON_LOGS_MAX_BYTES (older ones are dropped
  as newer ones arrive) and says `truncated: true` when any were dropped;
- the download is streamed to the client line by line up to DOCKMON_LOGS_DOWNLOAD_MAX_BYTES, then
  ends with a marker line that says it was cut. Lines longer than DOWNLOAD_LINE_LIMIT are cut
  with a note of the bytes left out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse

from containers import engine
from containers.engine import logs as engine_logs

DOWNLOAD_LINE_LIMIT = 1024 * 1024
_FLUSH_BYTES = 64 * 1024


def _cost(line: engine_logs.LogLine) -> int:
    return len(line.text.encode("utf-8", "replace")) + 1


def newest_lines(reader: engine_logs.LogReader, cap: int) -> tuple[list[engine_logs.LogLine], bool]:
    """The newest lines of `reader` whose text fits in `cap` bytes; whether any were dropped."""
    window: deque[tuple[engine_logs.LogLine, int]] = deque()
    size, truncated = 0, False
    for line in reader:
        cost = _cost(line)
        window.append((line, cost))
        size += cost
        while size > cap and window:
            _, dropped = window.popleft()
            size -= dropped
            truncated = True
    return [line for line, _ in window], truncated


def download_line(line: engine_logs.LogLine) -> bytes:
    ts = line.ts.isoformat().replace("+00:00", "Z") if line.ts else ""
    return f"{ts} {line.stream} {line.text}\n".encode("utf-8", "replace")


def cut_marker(cap: int) -> bytes:
    return (f"[DockMon: the log was cut here at {cap} bytes (DOCKMON_LOGS_DOWNLOAD_MAX_BYTES); "
            "ask for less with tail= or since=]\n").encode()


def download_chunks(reader: engine_logs.LogReader, cap: int, on_close=None) -> Iterator[bytes]:
    """The download's bytes in chunks; at most `cap` bytes of lines, then the marker line."""
    written, buffer = 0, bytearray()
    try:
        for line in reader:
            data = download_line(line)
            if written + len(buffer) + len(data) > cap:
                buffer += cut_marker(cap)
                break
            buffer += data
            if len(buffer) >= _FLUSH_BYTES:
                written += len(buffer)
                yield bytes(buffer)
                buffer.clear()
    except engine.EngineError as exc:
        buffer += f"[DockMon: reading the log failed here: {exc}]\n".encode()
    finally:
        reader.close()
        if on_close is not None:
            on_close()
    if buffer:
        yield bytes(buffer)


async def _in_threads(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Serve a blocking iterator under ASGI one chunk at a time (Django would otherwise read a
    synchronous iterator to its end into memory before sending anything)."""
    done = object()
    step = sync_to_async(next, thread_sensitive=False)
    try:
        while True:
            chunk = await step(chunks, done)
            if chunk is done:
                return
            yield chunk
    finally:
        try:
            await sync_to_async(chunks.close, thread_sensitive=False)()
        except ValueError:
            pass  # still running in its thread (the client went away mid-read): it ends on its own


def streaming_response(request, chunks: Iterator[bytes], *, filename: str) -> StreamingHttpResponse:
    django_request = getattr(request, "_request", request)
    content = _in_threads(chunks) if isinstance(django_request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def open_reader(client, container, query: dict) -> engine_logs.LogReader:
    line_limit = DOWNLOAD_LINE_LIMIT if query["download"] else engine_logs.MAX_LINE_BYTES
    return engine_logs.LogReader(client, container.container_id, tail=query["tail"], since=query.get("since"), line_limit=line_limit)


def json_cap() -> int:
    return settings.DOCKMON_LOGS_MAX_BYTES


def download_cap() -> int:
    return settings.DOCKMON_LOGS_DOWNLOAD_MAX_BYTES
