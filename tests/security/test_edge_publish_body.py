"""Issue 11, finding 12: an oversized publish body is refused (401 before auth, 413 by
Content-Length or by a running count of a chunked body) without the gateway reading it:
measured on a real gateway process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from roomgate_common.identity import Principal, PrincipalKind

from tests.gateway.conftest import services
from tests.security.edge import gateway_process, rss_bytes, upload

HUGE = 256 << 20
# The old gateway buffered the body (RSS grew by ~2x the upload); now at most the limit plus
# the transport's read buffers. 32 MiB is far from both.
MAX_GROWTH = 32 << 20


def _head(token: str | None, *, length: int | None) -> bytes:
    lines = ["POST /api/v1/publish HTTP/1.1", "Host: gw", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_huge_publish_bodies_do_not_grow_the_gateway(tmp_path: Path, redis_url: str) -> None:
    """256 MiB uploads get 401/413 without the body being read; the gateway's RSS stays flat."""
    async with services(redis_url) as (auth, authz):
        token, _ = auth.policy.mint(
            Principal(kind=PrincipalKind.SERVICE, id="svc", permissions=("publish",))
        )
        with gateway_process(tmp_path, redis_url, auth.port, authz.port) as (port, proc):
            assert proc.proc is not None
            before = rss_bytes(proc.proc.pid)
            cases = [
                (None, HUGE, 401),  # no token: refused before a byte of body is read
                (token, HUGE, 413),  # declared too long: refused unread
                (token, None, 413),  # chunked: refused once the running count passes 64 KiB
            ]
            for tok, length, status in cases:
                got, sent = await asyncio.to_thread(
                    upload, port, _head(tok, length=length), HUGE, chunked=length is None
                )
                assert got == status, (tok is not None, length, got, sent)
                assert sent < HUGE // 4, sent  # the gateway stopped reading long before the end
                print(f"status {got}, body bytes sent {sent >> 20} MiB")
            growth = rss_bytes(proc.proc.pid) - before
            print(f"gateway RSS growth {growth / (1 << 20):.1f} MiB")
            assert growth < MAX_GROWTH, f"RSS grew {growth >> 20} MiB"
