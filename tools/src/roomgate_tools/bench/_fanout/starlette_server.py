"""Baseline 1, the naive fan-out: a Starlette app on uvicorn (uvloop, httptools) that
subscribes one Redis channel and, for each message, loops ``await ws.send_text(msg)`` over
its connected sockets. No authentication, no rooms, no queues.

    python -m roomgate_tools.bench._fanout.starlette_server --port P --redis-url URL --channel C

It relays the envelope of Roomgate's bus format (``b"<offset> <epoch> <envelope JSON>"``), so
its clients receive the same frames the gateway's do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from roomgate_tools.bench._fanout._serve import parse_args, serve


def build_app(redis_url: str, channel: str) -> Starlette:
    sockets: set[WebSocket] = set()

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        sockets.add(ws)
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
        finally:
            sockets.discard(ws)

    async def relay() -> None:
        redis = aioredis.Redis.from_url(redis_url)
        pubsub = redis.pubsub()
        await pubsub.subscribe(channel)
        try:
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                text = message["data"].split(b" ", 2)[2].decode()
                for ws in list(sockets):
                    try:
                        await ws.send_text(text)
                    except Exception:
                        sockets.discard(ws)
        finally:
            await pubsub.aclose()
            await redis.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(relay())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(build_app(args.redis_url, args.channel), args.port, args.ws)


if __name__ == "__main__":
    main()
