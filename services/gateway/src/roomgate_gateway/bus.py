"""The gateway's subscriber on the Redis bus.

One pub/sub connection per gateway. A room's channel is subscribed only while the gateway
has a local member in it (``join``/``leave`` count members), so no gateway receives
traffic for rooms it does not serve. Control channels (ACL changes, policy changes, this
gateway's commands) are always subscribed. On a Redis failure the reader reconnects with
backoff and resubscribes every channel; the gap is visible to clients through offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from redis.asyncio.client import PubSub
from roomgate_common import keys
from roomgate_common.redis_adapter import CONNECTION_ERRORS, Redis, connect

from roomgate_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

RoomHandler = Callable[[str, bytes], None]
ControlHandler = Callable[[str, bytes], None]


class RoomBus:
    def __init__(
        self,
        redis_url: str,
        *,
        on_room: RoomHandler,
        on_control: ControlHandler,
        control_channels: list[str],
        metrics: GatewayMetrics,
    ) -> None:
        self._redis: Redis = connect(redis_url, name="roomgate-gateway-sub", retries=0)
        self._pubsub: PubSub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._on_room = on_room
        self._on_control = on_control
        self._control = control_channels
        self._metrics = metrics
        self._channel_room: dict[bytes, str] = {}
        self._members: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = asyncio.Event()

    @property
    def rooms(self) -> int:
        return len(self._members)

    def serves(self, room: str) -> bool:
        return room in self._members

    async def start(self) -> None:
        await self._pubsub.subscribe(*self._control)
        self.connected.set()
        self._metrics.redis_up.set(1)
        self._task = asyncio.create_task(self._read(), name="bus-reader")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2.0)
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self._pubsub.aclose()
        await self._redis.aclose()

    async def join(self, room: str) -> None:
        """One more local member in ``room``; subscribes its channel for the first."""
        count = self._members.get(room, 0)
        self._members[room] = count + 1
        if count == 0:
            channel = keys.room_channel(room)
            self._channel_room[channel.encode()] = room
            self._metrics.rooms.set(len(self._members))
            with contextlib.suppress(*CONNECTION_ERRORS):
                # On failure the reader's reconnect resubscribes everything in _channel_room.
                await self._pubsub.subscribe(channel)

    async def leave(self, room: str) -> None:
        """One local member fewer; unsubscribes the channel when the last one leaves."""
        count = self._members.get(room, 0)
        if count <= 1:
            self._members.pop(room, None)
            channel = keys.room_channel(room)
            self._channel_room.pop(channel.encode(), None)
            self._metrics.rooms.set(len(self._members))
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._pubsub.unsubscribe(channel)
        else:
            self._members[room] = count - 1

    async def _read(self) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                message = await self._pubsub.get_message(timeout=None)
                if message is None:
                    continue
                backoff = 0.05
                channel: bytes = message["channel"]
                room = self._channel_room.get(channel)
                try:
                    if room is not None:
                        self._on_room(room, message["data"])
                    elif message["type"] == "message":
                        self._on_control(channel.decode(), message["data"])
                except Exception:
                    log.exception("bus message handler failed")
            except asyncio.CancelledError:
                raise
            except (*CONNECTION_ERRORS, RuntimeError) as exc:
                self.connected.clear()
                self._metrics.redis_up.set(0)
                log.warning("redis subscriber lost: %s; reconnecting", type(exc).__name__)
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 2.0)
                await self._resubscribe()

    async def _resubscribe(self) -> None:
        try:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._pubsub.aclose()
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            channels = [*self._control, *(c.decode() for c in self._channel_room)]
            await self._pubsub.subscribe(*channels)
        except CONNECTION_ERRORS:
            return
        self.connected.set()
        self._metrics.redis_up.set(1)
        self._metrics.redis_reconnects.inc()
        log.info("redis subscriber reconnected (%d channels)", len(channels))
