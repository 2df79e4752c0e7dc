"""The channel layer: channels_redis' pub/sub layer, plus word of a lost Redis connection.

Pub/sub subscriptions live in the web process, and redis-py subscribes again by itself when
it reconnects, so open WebSockets keep their groups across a Redis restart. What pub/sub cannot
do is replay what was published while the connection was down. So when a web process's
subscriber connection comes back after a failure, every local consumer is sent one
`dockmon.resync` message; the consumer tells its client (`stream.resync`), and the client
reloads what it shows from the API instead of trusting a stream with a hole in it.

Publishing (`send` / `group_send`) and subscribing (a new socket's channel and groups) retry a
few times within a short deadline: the first command after a restart often meets a pooled
connection the server has closed. A subscription that still fails leaves nothing behind, and
the WebSocket being set up is refused with a close code (dockmon_site/ws_stack.py).

`check()` is a round trip through the layer as a WebSocket uses it (subscribe a channel,
publish to it, receive it on this process's subscriber connection): /readyz is only ready when
that works, not merely when Redis answers a PING.
"""

from __future__ import annotations

import asyncio
import logging

from channels_redis import pubsub

logger = logging.getLogger(__name__)

RESYNC_TYPE = "dockmon.resync"
PUBLISH_ATTEMPTS = 4
SUBSCRIBE_DEADLINE_SECONDS = 2.0


async def _retrying(call, attempts: int, deadline: float | None = None):
    give_up = None if deadline is None else asyncio.get_running_loop().time() + deadline
    for attempt in range(attempts):
        try:
            return await call()
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception:
            pause = 0.2 * (attempt + 1)
            if attempt == attempts - 1 or (give_up is not None and asyncio.get_running_loop().time() + pause > give_up):
                raise
            await asyncio.sleep(pause)


class _Shard(pubsub.RedisSingleShardConnection):
    async def publish(self, channel, message):
        return await _retrying(lambda: super(_Shard, self).publish(channel, message), PUBLISH_ATTEMPTS)

    async def subscribe(self, channel):
        return await _retrying(lambda: super(_Shard, self).subscribe(channel), PUBLISH_ATTEMPTS, SUBSCRIBE_DEADLINE_SECONDS)

    async def _do_receiving(self):
        broken = False
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    if broken:
                        # get_message came back without an error: reconnected and subscribed again.
                        broken = False
                        logger.warning("Redis subscriber connection is back; asking clients to resync")
                        self._announce_resync()
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (TimeoutError, asyncio.CancelledError, GeneratorExit):
                raise
            except BaseException as exc:
                if not broken:
                    logger.warning("Redis subscriber connection lost (%s); reconnecting", exc)
                broken = True
                await asyncio.sleep(0.5)

    def _announce_resync(self) -> None:
        data = self.channel_layer.channel_layer.serialize({"type": RESYNC_TYPE})
        for queue in list(self.channel_layer.channels.values()):
            queue.put_nowait(data)


class _LoopLayer(pubsub.RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]

    async def _subscribe_to_channel(self, channel):
        try:
            await super()._subscribe_to_channel(channel)
        except BaseException:
            self.channels.pop(channel, None)  # not left behind as a queue nobody reads
            raise

    async def group_add(self, group, channel):
        try:
            await super().group_add(group, channel)
        except BaseException:
            members = self.groups.get(self._get_group_channel_name(group))
            if members is not None:
                members.discard(channel)
                if not members:
                    self.groups.pop(self._get_group_channel_name(group), None)
            raise

    async def discard_channel(self, channel) -> None:
        self.channels.pop(channel, None)
        try:
            await self._get_shard(channel).unsubscribe(channel)
        except Exception:
            pass  # the connection is gone: so is the subscription

    async def check(self, timeout: float) -> None:
        channel = None

        async def round_trip():
            nonlocal channel
            channel = await self.new_channel("readyz.")
            await self.send(channel, {"type": "dockmon.ping"})
            await self.channels[channel].get()

        try:
            await asyncio.wait_for(round_trip(), timeout)
        finally:
            if channel is not None:
                await self.discard_channel(channel)


class ChannelLayer(pubsub.RedisPubSubChannelLayer):
    def _get_layer(self):
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            pubsub._wrap_close(self, loop)
            return layer

    async def check(self, timeout: float = 3.0) -> None:
        """Raises unless a message makes the round trip through Redis within `timeout` s."""
        await self._get_layer().check(timeout)


async def check_layer(layer, timeout: float = 3.0) -> None:
    """The same round trip on any channel layer (DockMon's own, the list-based one, in-memory)."""
    if hasattr(type(layer), "check"):
        await layer.check(timeout)
        return

    async def round_trip():
        channel = await layer.new_channel("readyz.")
        await layer.send(channel, {"type": "dockmon.ping"})
        await layer.receive(channel)

    await asyncio.wait_for(round_trip(), timeout)
