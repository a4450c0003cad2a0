"""Revoked tokens lose their live sessions: auth announces every revocation on
``keys.REVOCATIONS_CHANNEL`` (``roomgate_common.revocation``), every gateway subscribes to
it with its control channels, and this module closes the WebSocket and SSE sessions of
this gateway that the revocation covers with 4001 ``revoked`` (and forgets the publish
APIs' kept credentials it covers, ``roomgate_common.credentials``). The lookup is the
principal's own connections (``Gateway.by_user``), not a scan.

Pub/sub is at-most-once: events published while the gateway's subscriber was away are
lost. So after the subscriber reconnects, ``sweep_revoked`` checks every local session
against the revocation marks auth keeps in Redis (one pipeline) and closes the revoked."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from roomgate_common import keys
from roomgate_common.redis_adapter import CONNECTION_ERRORS
from roomgate_common.revocation import Revocation, parse_revocation

from roomgate_gateway.clients import KIND_NAMES
from roomgate_gateway.codes import REVOKED_REASON, CloseCode

if TYPE_CHECKING:
    from roomgate_gateway.gateway import Gateway

log = logging.getLogger(__name__)

_KIND_CODES = {name: code for code, name in KIND_NAMES.items()}


def close_revoked(gw: Gateway, data: bytes) -> int:
    """Close this gateway's sessions that the revocation in ``data`` covers; how many."""
    try:
        revocation = parse_revocation(data)
    except ValueError as exc:
        log.warning("ignored a malformed revocation event: %s", exc)
        return 0
    gw.publish_credentials.revoke(revocation)  # the publish APIs ask auth again
    closed = 0
    for conn in list(gw.by_user.get((_KIND_CODES[revocation.kind], revocation.id), ())):
        principal = conn.principal
        if principal is not None and revocation.revokes(
            conn.kind, principal.id, principal.token_id, principal.issued_at
        ):
            conn.close_soon(CloseCode.UNAUTHORIZED, REVOKED_REASON)
            closed += 1
    if closed:
        log.info("closed %d revoked sessions", closed, extra={"kind": revocation.kind})
    return closed


async def sweep_revoked(gw: Gateway) -> int:
    """Close the local sessions whose token Redis marks revoked; how many (0 when Redis
    cannot be read: the next reconnect sweeps again)."""
    conns = [c for c in gw.connections if c.principal is not None]
    if not conns:
        return 0
    pipe = gw.redis.pipeline(transaction=False)
    for conn in conns:
        assert conn.principal is not None
        pipe.exists(keys.revoked_token(conn.principal.token_id))
        pipe.get(keys.revoked_before(conn.kind, conn.principal.id))
    try:
        marks = await pipe.execute()
    except CONNECTION_ERRORS as exc:
        log.warning("revocation sweep skipped: %s", type(exc).__name__)
        return 0
    closed = 0
    for conn, by_jti, before in zip(conns, marks[0::2], marks[1::2], strict=True):
        principal = conn.principal
        assert principal is not None
        if by_jti or (
            before is not None
            and Revocation(conn.kind, principal.id, before=float(before)).revokes(
                conn.kind, principal.id, principal.token_id, principal.issued_at
            )
        ):
            conn.close_soon(CloseCode.UNAUTHORIZED, REVOKED_REASON)
            closed += 1
    if closed:
        log.info("closed %d sessions revoked while the bus was away", closed)
    return closed
