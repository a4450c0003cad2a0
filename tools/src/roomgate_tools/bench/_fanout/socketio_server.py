"""Baseline 2: python-socketio's ``AsyncServer`` with ``AsyncRedisManager`` on uvicorn
(uvloop, httptools). A client joins a room by emitting ``subscribe`` with the room name
(acknowledged); events come from an external ``AsyncRedisManager(write_only=True)``.

    python -m roomgate_tools.bench._fanout.socketio_server --port P --redis-url URL --channel C
"""

from __future__ import annotations

from typing import Any

import socketio

from roomgate_tools.bench._fanout._serve import parse_args, serve


def build_app(redis_url: str, channel: str) -> Any:
    manager = socketio.AsyncRedisManager(redis_url, channel=channel)
    server = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        logger=False,
        engineio_logger=False,
    )

    @server.on("subscribe")  # type: ignore[untyped-decorator]
    async def subscribe(sid: str, room: str) -> bool:
        await server.enter_room(sid, room)
        return True

    return socketio.ASGIApp(server)


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(build_app(args.redis_url, args.channel), args.port, args.ws)


if __name__ == "__main__":
    main()
