"""Centrifugo as a peer of the fan-out benchmark: the leading open-source real-time server (Go),
run with its Redis engine and JWT authentication, so that it does what the gateway does on
connect (verify a token, subscribe a channel through Redis) and on publish (a message through
Redis to every subscriber).

The binary is built once by ``make bench-tools`` (``go install
github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION)``) into
``.cache/bench-tools/bin/centrifugo``; ``$ROOMGATE_CENTRIFUGO`` or ``$PATH`` can name another.

Fair settings, both ways (docs/benchmarks.md):

- one Centrifugo process (GOMAXPROCS left to Go: both cores, as the gateway's one process
  can use a core for Python and the kernel's share of its socket writes the other);
- Redis engine on the same redis-server the gateway uses, history on for the channel (like
  the gateway's room history, 100 messages / 300 s), so a publish is an append plus a fan-out;
- JWT HS256 connection tokens, one user per client, checked on connect;
- publications through Centrifugo's HTTP server API on a kept-alive connection (its CPU for
  those calls is counted: the gateway's figures of the same phase count its own publish path
  when run with the HTTP publisher).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

import jwt

from roomgate_tools.bench._fanout.loadgen import Wire
from roomgate_tools.bench._fanout.targets import _Target
from roomgate_tools.bench._fanout.wire import CentrifugoWire
from roomgate_tools.bench._http import HttpError, KeepAliveClient
from roomgate_tools.procs import ProcessError, free_port

ROOM = "system"
REPO_ROOT = Path(__file__).resolve().parents[5]
BUILT = REPO_ROOT / ".cache" / "bench-tools" / "bin" / "centrifugo"


def find_centrifugo() -> str:
    """The Centrifugo binary: $ROOMGATE_CENTRIFUGO, the one ``make bench-tools`` built, or
    $PATH."""
    named = os.environ.get("ROOMGATE_CENTRIFUGO")
    if named:
        return named
    if BUILT.exists():
        return str(BUILT)
    found = shutil.which("centrifugo")
    if found:
        return found
    raise ProcessError("centrifugo is not built: run `make bench-tools`")


class HttpApiPublisher:
    """POSTs each event to Centrifugo's ``/api/publish`` on one kept-alive connection."""

    def __init__(self, host: str, port: int, api_key: str) -> None:
        self._http = KeepAliveClient(host, port)
        self._headers = {"X-API-Key": api_key}

    async def publish(self, seq: int) -> None:
        await self.publish_data({"t": time.time_ns(), "seq": seq})

    async def publish_data(self, data: dict[str, object]) -> None:
        body = json.dumps({"channel": ROOM, "data": data}, separators=(",", ":")).encode()
        status, payload = await self._http.post("/api/publish", body, self._headers)
        if status != 200 or b'"error"' in payload:
            raise HttpError(f"centrifugo publish failed: {status} {payload[:200]!r}")

    async def publish_batch(self, items: list[dict[str, object]]) -> None:
        """Several publishes in one ``/api/batch`` call (executed in order)."""
        commands = [{"publish": {"channel": ROOM, "data": data}} for data in items]
        body = json.dumps({"commands": commands}, separators=(",", ":")).encode()
        status, payload = await self._http.post("/api/batch", body, self._headers)
        if status != 200 or b'"error"' in payload:
            raise HttpError(f"centrifugo batch failed: {status} {payload[:200]!r}")

    async def close(self) -> None:
        await self._http.close()


class CentrifugoTarget(_Target):
    name = "centrifugo"
    description = "Centrifugo v6 (Go; Redis engine, JWT auth, history on)"

    def __init__(self) -> None:
        super().__init__()
        self.secret = secrets.token_urlsafe(48)
        self.api_key = secrets.token_urlsafe(32)
        self.tokens: list[str] = []

    def _mint(self, user: int) -> str:
        now = int(time.time())
        return jwt.encode({"sub": str(user), "iat": now, "exp": now + 3600}, self.secret, "HS256")

    def config(self, redis_url: str) -> dict[str, object]:
        """Centrifugo v6's configuration for the run (``centrifugo defaultconfig`` names
        every key)."""
        return {
            "log": {"level": "error"},
            "health": {"enabled": True},
            "http_server": {"address": self.host, "port": self.port},
            "client": {
                "token": {"hmac_secret_key": self.secret},
                "allowed_origins": ["*"],
            },
            "http_api": {"key": self.api_key},
            "engine": {"type": "redis", "redis": {"address": [redis_url]}},
            "channel": {
                "without_namespace": {
                    "allow_subscribe_for_client": True,
                    "history_size": 100,
                    "history_ttl": "300s",
                    "force_recovery": True,
                }
            },
        }

    def start(self, workdir: Path, redis_url: str, clients: int) -> None:
        self.tokens = [self._mint(user) for user in range(1, clients + 100)]
        self.port = free_port()
        config = workdir / "centrifugo.json"
        config.write_text(json.dumps(self.config(redis_url), indent=2))
        self.server = self._spawn(
            [find_centrifugo(), "--config", str(config)], workdir / "centrifugo.log"
        )
        self._wait_ready("/health", timeout=30)

    def wire(self) -> Wire:
        return CentrifugoWire(self.tokens)

    async def publisher(self, redis_url: str) -> HttpApiPublisher:
        return HttpApiPublisher(self.host, self.port, self.api_key)
