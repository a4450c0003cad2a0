"""Revoked tokens lose their live sessions: auth announces every revocation on
``keys.REVOCATIONS_CHANNEL`` (``roomgate_common.revocation``), every gateway subscribes to
it with its control channels, and this module closes the WebSocket and SSE sessions of
this gateway that the revocation covers with 4001 ``revoked`` (and forgets the publish
APIs' kept credentials it covers, ``roomgate_common.credentials``). The lookup is the
principal's own connections (``RoomTable.of_principal``), not a scan.

Pub/sub is at-most-once: events published while the gateway's subscriber was away are
lost. So after the subscriber reconnects, ``sweep_revoked`` checks every local session
against the revocation marks auth keeps in Redis (one pipeline) and closes the revoked."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from roomgate_common.credentials import CredentialCache
from roomgate_common.revocation import Revocation, parse_revocation

from roomgate_gateway.clients import KIND_NAMES
from roomgate_gateway.codes import REVOKED_REASON, CloseCode
from roomgate_gateway.store import BUS_ERRORS

if TYPE_CHECKING:
    from roomgate_gateway.clients import Principal
    from roomgate_gateway.rooms import RoomTable
    from roomgate_gateway.store import GatewayStore

log = logging.getLogger(__name__)

_KIND_CODES = {name: code for code, name in KIND_NAMES.items()}


def close_revoked(table: RoomTable, credentials: CredentialCache[Principal], data: bytes) -> int:
    """Close this gateway's sessions that the revocation in ``data`` covers; how many."""
    try:
        revocation = parse_revocation(data)
    except ValueError as exc:
        log.warning("ignored a malformed revocation event: %s", exc)
        return 0
    credentials.revoke(revocation)  # the publish APIs ask auth again
    closed = 0
    for conn in list(table.of_principal(_KIND_CODES[revocation.kind], revocation.id)):
        principal = conn.principal
        if principal is not None and revocation.revokes(
            conn.kind, principal.id, principal.token_id, principal.issued_at
        ):
            conn.close_soon(CloseCode.UNAUTHORIZED, REVOKED_REASON)
            closed += 1
    if closed:
        log.info("closed %d revoked sessions", closed, extra={"kind": revocation.kind})
    return closed


async def sweep_revoked(table: RoomTable, store: GatewayStore) -> int:
    """Close the local sessions whose token Redis marks revoked; how many (0 when Redis
    cannot be read: the next reconnect sweeps again)."""
    conns = [c for c in table.connections if c.principal is not None]
    if not conns:
        return 0
    sessions = []
    for conn in conns:
        assert conn.principal is not None
        sessions.append((conn.principal.token_id, conn.kind, conn.principal.id))
    try:
        marks = await store.revocation_marks(sessions)
    except BUS_ERRORS as exc:
        log.warning("revocation sweep skipped: %s", type(exc).__name__)
        return 0
    closed = 0
    for conn, (by_jti, before) in zip(conns, marks, strict=True):
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
