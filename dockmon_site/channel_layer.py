"""The channel layer: channels_redis' pub/sub layer, plus word of a lost Redis connection.

Pub/sub subscriptions live in the web process, and redis-py subscribes again by itself when
it reconnects, so open WebSockets keep their groups across a Redis restart. What pub/sub cannot
do is replay what was published while the connection was down. So when a web process's
subscriber connection comes back after a failure, every local consumer is sent one
`dockmon.resync` message; the consumer tells its client (`stream.resync`), and the client
reloads what it shows from the API instead of trusting a stream with a hole in it.

Publishing (`send` / `group_send`) retries a few times: the first command after a restart
often meets a pooled connection the server has closed.
"""

from __future__ import annotations

import asyncio
import logging

from channels_redis import pubsub

logger = logging.getLogger(__name__)

RESYNC_TYPE = "dockmon.resync"
PUBLISH_ATTEMPTS = 4


class _Shard(pubsub.RedisSingleShardConnection):
    async def publish(self, channel, message):
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                return await super().publish(channel, message)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))

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
