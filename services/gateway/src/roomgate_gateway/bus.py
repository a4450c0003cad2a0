"""The gateway's subscriber on the Redis bus.

One pub/sub connection per gateway. A room's channel is subscribed only while the gateway
has a local member in it (``join``/``leave`` count members), so no gateway receives
traffic for rooms it does not serve. ``join`` returns once Redis has confirmed a new
channel's subscription, so that what is read from the room's history afterwards and what
arrives live leave no gap between them. Control channels (ACL changes, policy changes, this
gateway's commands) are always subscribed. On a Redis failure the reader reconnects with
backoff and resubscribes every channel; the gap is visible to clients through offsets.

In a Redis Cluster (``redis+cluster://``) room channels are sharded (``SSUBSCRIBE``): each
channel is subscribed on the shard that owns its slot (``ShardedChannels``, one connection
and one reader per shard); control channels stay classic (cluster-wide) on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import cast

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from roomgate_common import keys
from roomgate_common.redis_adapter import (
    CONNECTION_ERRORS,
    Redis,
    cluster_url,
    connect,
)

from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.tasks import Tasks

log = logging.getLogger(__name__)

RoomHandler = Callable[[str, bytes], None]
ControlHandler = Callable[[str, bytes], None]

# How long join waits for Redis to confirm a new channel's subscription before going on
# (a lost connection is the reader's to handle: it resubscribes and catches up).
SUBSCRIBE_CONFIRM_TIMEOUT = 2.0


class Confirmations:
    """Futures for channel subscriptions Redis has not confirmed yet; the reader resolves
    them when the (s)subscribe reply for the channel arrives."""

    def __init__(self) -> None:
        self._waiting: dict[bytes, list[asyncio.Future[None]]] = {}

    def expect(self, channel: bytes) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(channel, []).append(future)
        return future

    def pending(self, channel: bytes) -> asyncio.Future[None] | None:
        """The unconfirmed subscription of ``channel``, if one is on its way."""
        waiting = self._waiting.get(channel)
        return waiting[0] if waiting else None

    def confirmed(self, channel: bytes) -> None:
        for future in self._waiting.pop(channel, ()):
            if not future.done():
                future.set_result(None)

    async def wait(self, channel: bytes, future: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(future), SUBSCRIBE_CONFIRM_TIMEOUT)
        except TimeoutError:
            waiting = self._waiting.get(channel)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiting[channel]
            log.warning("no subscribe confirmation from redis for %s", channel.decode())


class ShardedChannels:
    """Sharded pub/sub over a Redis Cluster: one subscriber connection per shard that owns
    at least one subscribed channel. On a connection error the owners are looked up again
    (slots may have moved) and every channel is subscribed anew."""

    def __init__(self, url: str, on_message: Callable[[bytes, bytes], None]) -> None:
        self._cluster = cast(RedisCluster, connect(url, name="roomgate-gateway-shards", retries=0))
        self._on_message = on_message
        self._channels: dict[bytes, str] = {}  # channel -> owning node name
        self._shards: dict[str, tuple[Redis, PubSub, asyncio.Task[None]]] = {}
        self._stopping = False
        self._tasks = Tasks()  # the reshards after a shard's connection failed
        self.confirmations = Confirmations()

    async def start(self) -> None:
        await self._cluster.initialize()

    async def subscribe(self, channel: str) -> None:
        node = self._cluster.get_node_from_key(channel)
        if node is None:  # no owner in the slot map (mid-failover): retried like a lost link
            raise RedisConnectionError(f"no Redis Cluster node serves {channel}")
        self._channels[channel.encode()] = node.name
        shard = self._shards.get(node.name)
        if shard is not None:
            await shard[1].ssubscribe(channel)
            return
        client = Redis(host=node.host, port=int(node.port))
        pubsub = client.pubsub()
        await pubsub.ssubscribe(channel)  # connects first
        task = asyncio.create_task(self._read(node.name, pubsub), name=f"shard-{node.name}")
        self._shards[node.name] = (client, pubsub, task)

    async def unsubscribe(self, channel: str) -> None:
        name = self._channels.pop(channel.encode(), None)
        shard = self._shards.get(name) if name else None
        if shard is not None:
            await shard[1].sunsubscribe(channel)

    async def _read(self, name: str, pubsub: PubSub) -> None:
        while not self._stopping:
            try:
                message = await pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except (*CONNECTION_ERRORS, RuntimeError):
                if not self._stopping:
                    self._tasks.start(self._reshard(name), name=f"reshard-{name}")
                return
            if message is None:
                continue
            if message["type"] == "smessage":
                self._on_message(message["channel"], message["data"])
            elif message["type"] == "ssubscribe":
                self.confirmations.confirmed(message["channel"])

    async def _reshard(self, failed: str) -> None:
        await asyncio.sleep(0.1)
        client, pubsub, _task = self._shards.pop(failed)
        with contextlib.suppress(*CONNECTION_ERRORS):
            await pubsub.aclose()
            await client.aclose()
        for _ in range(50):
            try:
                await self._cluster.initialize()
                for channel, owner in list(self._channels.items()):
                    if owner == failed:
                        await self.subscribe(channel.decode())
                return
            except (*CONNECTION_ERRORS, RuntimeError):
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        self._stopping = True
        await self._tasks.cancel_all(2.0)
        for client, pubsub, task in self._shards.values():
            task.cancel()
            with contextlib.suppress(*CONNECTION_ERRORS):
                await pubsub.aclose()
                await client.aclose()
        await self._cluster.aclose()


class RoomBus:
    def __init__(
        self,
        redis_url: str,
        *,
        on_room: RoomHandler,
        on_control: ControlHandler,
        control_channels: list[str],
        metrics: GatewayMetrics,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._on_reconnect = on_reconnect
        plain = cluster_url(redis_url)
        # Control channels: classic pub/sub, cluster-wide from any node of a cluster.
        self._redis: Redis = connect(plain or redis_url, name="roomgate-gateway-sub", retries=0)
        self._pubsub: PubSub = self._redis.pubsub()
        self._confirmations = Confirmations()
        self._shards = ShardedChannels(redis_url, self._dispatch) if plain is not None else None
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
        if self._shards is not None:
            await self._shards.start()
        try:
            await self._pubsub.subscribe(*self._control)
        except CONNECTION_ERRORS as exc:
            # Pods start together: Redis may come a few seconds after the gateway. Start
            # disconnected (/readyz says 503 meanwhile); the reader's reconnect loop
            # subscribes once Redis answers, as after any outage, rather than a crash loop.
            self._metrics.redis_up.set(0)
            log.warning("redis not reachable at start: %s; waiting for it", type(exc).__name__)
        else:
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
        if self._shards is not None:
            await self._shards.stop()

    async def join(self, room: str) -> None:
        """One more local member in ``room``; subscribes its channel for the first."""
        count = self._members.get(room, 0)
        self._members[room] = count + 1
        channel = keys.room_channel(room)
        confirmations = (
            self._shards.confirmations if self._shards is not None else self._confirmations
        )
        if count > 0:  # subscribed, or on its way: wait for it like the first member does
            pending = confirmations.pending(channel.encode())
            if pending is not None:
                await confirmations.wait(channel.encode(), pending)
            return
        self._channel_room[channel.encode()] = room
        self._metrics.rooms.set(len(self._members))
        confirmed = confirmations.expect(channel.encode())
        try:
            if self._shards is not None:
                await self._shards.subscribe(channel)
            else:
                await self._pubsub.subscribe(channel)
        except CONNECTION_ERRORS:
            # The reader's reconnect resubscribes everything in _channel_room and
            # catches up from history.
            confirmations.confirmed(channel.encode())
            return
        await confirmations.wait(channel.encode(), confirmed)

    async def leave(self, room: str) -> None:
        """One local member fewer; unsubscribes the channel when the last one leaves."""
        count = self._members.get(room, 0)
        if count <= 1:
            self._members.pop(room, None)
            channel = keys.room_channel(room)
            self._channel_room.pop(channel.encode(), None)
            self._metrics.rooms.set(len(self._members))
            with contextlib.suppress(*CONNECTION_ERRORS):
                if self._shards is not None:
                    await self._shards.unsubscribe(channel)
                else:
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
                if message["type"] == "message":
                    self._dispatch(message["channel"], message["data"])
                elif message["type"] == "subscribe":
                    self._confirmations.confirmed(message["channel"])
            except asyncio.CancelledError:
                raise
            except (*CONNECTION_ERRORS, RuntimeError) as exc:
                self.connected.clear()
                self._metrics.redis_up.set(0)
                log.warning("redis subscriber lost: %s; reconnecting", type(exc).__name__)
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 2.0)
                await self._resubscribe()

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        room = self._channel_room.get(channel)
        try:
            if room is not None:
                self._on_room(room, data)
            else:
                self._on_control(channel.decode(), data)
        except Exception:
            log.exception("bus message handler failed")

    async def _resubscribe(self) -> None:
        try:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._pubsub.aclose()
            self._pubsub = self._redis.pubsub()
            channels = [*self._control]
            if self._shards is None:
                channels += [c.decode() for c in self._channel_room]
            await self._pubsub.subscribe(*channels)
        except CONNECTION_ERRORS:
            return
        self.connected.set()
        self._metrics.redis_up.set(1)
        self._metrics.redis_reconnects.inc()
        if self._on_reconnect is not None:
            await self._on_reconnect()
        log.info("redis subscriber reconnected (%d channels)", len(channels))
