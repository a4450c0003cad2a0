"""What both baseline servers share: command line, open-file limit, uvicorn settings."""

from __future__ import annotations

import argparse
import resource
from typing import Any

import uvicorn


def raise_nofile_limit() -> int:
    """Raise the soft open-file limit to the hard limit (thousands of sockets); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--channel", required=True, help="Redis pub/sub channel to relay")
    parser.add_argument(
        "--ws", default="auto", help="uvicorn's WebSocket implementation (default: auto)"
    )
    return parser.parse_args()


def serve(app: Any, port: int, ws: str = "auto") -> None:
    """uvicorn as the benchmark runs every server: one process, uvloop, httptools."""
    raise_nofile_limit()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws=ws,
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=2,
    )
