"""Baseline 1, the naive fan-out: a Starlette app on uvicorn (uvloop, httptools) that
subscribes one Redis channel and, for each message, loops ``await ws.send_text(msg)`` over
its connected sockets. No authentication, no rooms, no queues.

    python -m roomgate_tools.bench._fanout.starlette_server --port P --redis-url URL --channel C

It relays the envelope of Roomgate's bus format (``b"<offset> <epoch> <envelope JSON>"``), so
its clients receive the same frames the gateway's do.

For ``roomgate bench publish`` it is also the floor of an HTTP publish in Python:
``POST /api/v1/publish`` (one JSON event) and ``POST /api/v1/publish/batch`` (``{"events":
[...]}``) parse the body and PUBLISH each event to the channel, answering 202; no
authentication, no authorisation, no history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from roomgate_tools.bench._fanout._serve import parse_args, serve


def build_app(redis_url: str, channel: str) -> Starlette:
    sockets: set[WebSocket] = set()
    publisher = aioredis.Redis.from_url(redis_url)

    async def publish(request: Request) -> Response:
        event = json.loads(await request.body())
        await publisher.publish(channel, b"0 0 " + json.dumps(event).encode())
        return Response(status_code=202)

    async def publish_batch(request: Request) -> Response:
        events = json.loads(await request.body())["events"]
        async with publisher.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(channel, b"0 0 " + json.dumps(event).encode())
            await pipe.execute()
        return Response(status_code=202)

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
        await publisher.aclose()

    routes = [
        WebSocketRoute("/ws", endpoint),
        Route("/api/v1/publish", publish, methods=["POST"]),
        Route("/api/v1/publish/batch", publish_batch, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(build_app(args.redis_url, args.channel), args.port, args.ws)


if __name__ == "__main__":
    main()
