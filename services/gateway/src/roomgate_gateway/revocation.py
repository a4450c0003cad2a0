"""Revoked tokens lose their live sessions: auth announces every revocation on
``keys.REVOCATIONS_CHANNEL`` (``roomgate_common.revocation``), every gateway subscribes to
it with its control channels, and this module closes the WebSocket and SSE sessions of
this gateway that the revocation covers with 4001 ``revoked``. The lookup is the
principal's own connections (``Gateway.by_user``), not a scan."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from roomgate_common.revocation import parse_revocation

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
