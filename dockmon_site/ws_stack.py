"""Two ASGI wrappers around DockMon's WebSocket application.

- `Guard`: whatever fails while a socket is being set up or served (the channel layer while
  Redis is down or just restarted, the database) ends that socket with a WebSocket close code
  and one `error` message, never with daphne's HTTP 500: 4013 ("try again later", reason
  "unavailable") when the channel layer is unreachable, 4011 for anything else. (daphne's
  WebSocket library lets an application close only with 1000 or 3000-4999, so these mirror
  the standard 1013 and 1011 in the private range.)
- `FlowControl`: tells the consumer how far the client is behind. ASGI has no backpressure for
  WebSockets (daphne writes every message into the connection's buffer at once, however slowly
  the client reads), so the consumer is handed a SendFlow in `scope["dockmon.flow"]`: a push
  producer registered on the connection (Twisted's public producer API, reached through
  daphne's `send`, which is `partial(server.handle_reply, protocol)`). Twisted pauses it when
  the connection's write buffer is over its size (64 KiB) and resumes it once the buffer has
  drained. Under another ASGI server (or the in-process test communicator) there is no flow
  object and the consumer sends without waiting.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from dockmon_site import realtime

logger = logging.getLogger(__name__)

CLOSE_TRY_AGAIN = 4013
CLOSE_INTERNAL = 4011


def channel_layer_error(exc: BaseException) -> bool:
    """Does this failure come from the channel layer's Redis (down, restarting, refusing)?"""
    from redis import exceptions as redis_exceptions

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError, redis_exceptions.BusyLoadingError,
                            ConnectionError, TimeoutError, OSError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class Guard:
    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        application = self.application
        if scope["type"] != "websocket":
            return await application(scope, receive, send)
        state = {"accepted": False, "closed": False}

        async def tracking_send(message):
            kind = message.get("type")
            if kind == "websocket.accept":
                state["accepted"] = True
            elif kind == "websocket.close":
                state["closed"] = True
            await send(message)

        try:
            return await application(scope, receive, tracking_send)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if state["closed"]:
                logger.warning("WebSocket consumer failed after closing: %r", exc)
                return None
            unavailable = channel_layer_error(exc)
            if unavailable:
                logger.warning("WebSocket refused: the channel layer is unavailable (%r)", exc)
                text, code = "Live updates are unavailable right now (the message bus is down); try again shortly.", CLOSE_TRY_AGAIN
            else:
                logger.exception("WebSocket consumer failed")
                text, code = "Internal error on the live stream.", CLOSE_INTERNAL
            try:
                if not state["accepted"]:
                    await send({"type": "websocket.accept"})
                reason = "unavailable" if unavailable else "internal"
                await send({"type": "websocket.send", "text": realtime.encode("error", {"message": text, "reason": reason})})
                await send({"type": "websocket.close", "code": code})
            except Exception:
                pass  # the client is gone already
            return None


class SendFlow:
    """Push producer on one WebSocket connection: `paused` while the client is not taking what
    was written to it; `backlog` counts the bytes handed to the server since it paused."""

    def __init__(self):
        self.paused = False
        self.stopped = False
        self.backlog = 0
        self._resumed = asyncio.Event()
        self._resumed.set()

    # Twisted's IPushProducer (called on the event loop, which Twisted's asyncio reactor shares).
    def pauseProducing(self):
        self.paused = True
        self._resumed.clear()

    def resumeProducing(self):
        self.paused = False
        self.backlog = 0
        self._resumed.set()

    def stopProducing(self):
        self.stopped = True
        self.paused = False
        self._resumed.set()

    def sent(self, size: int) -> None:
        if self.paused:
            self.backlog += size

    async def wait_resumed(self, timeout: float | None = None) -> bool:
        if not self.paused:
            return True
        try:
            await asyncio.wait_for(self._resumed.wait(), timeout)
        except TimeoutError:
            return False
        return not self.paused


def _daphne_protocol(send):
    if isinstance(send, functools.partial) and send.args and hasattr(send.args[0], "registerProducer"):
        return send.args[0]
    return None


class FlowControl:
    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            protocol = _daphne_protocol(send)
            if protocol is not None:
                flow = SendFlow()
                try:
                    try:
                        protocol.registerProducer(flow, True)
                    except RuntimeError:
                        # daphne upgrades an HTTP connection: the HTTP channel that received the
                        # handshake is still registered as the connection's producer, though it
                        # has handed the connection over. It gives up that role to us.
                        protocol.unregisterProducer()
                        protocol.registerProducer(flow, True)
                except Exception as exc:  # the connection is gone, or no producer API
                    logger.info("no send flow control on this WebSocket: %r", exc)
                else:
                    scope = dict(scope, **{"dockmon.flow": flow})
        return await self.application(scope, receive, send)
