"""The revocation event (pub/sub ``keys.REVOCATIONS_CHANNEL``). Pure.

Auth publishes one message after each stored revocation, JSON::

    {"kind": "user", "id": "42", "jti": "..."}           RevokeToken: that token
    {"kind": "user", "id": "42", "before": 1767000000.5}  RevokeAll: tokens issued up to then

Gateways close every live session (WebSocket and SSE) of a revoked token with 4001
``revoked``. The event only speeds up what the Redis marks already say: a gateway that
misses it still refuses the token at the next connect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

KINDS = ("user", "agent", "service")


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: str
    id: str
    jti: str = ""  # one token; empty: every token issued at or before ``before``
    before: float = 0.0

    def to_json(self) -> str:
        body: dict[str, object] = {"kind": self.kind, "id": self.id}
        if self.jti:
            body["jti"] = self.jti
        else:
            body["before"] = self.before
        return json.dumps(body, separators=(",", ":"))

    def revokes(self, kind: str, principal_id: str, jti: str, issued_at: float) -> bool:
        """Does this revocation cover the token (of this principal, with this jti, issued
        then)?"""
        if (kind, principal_id) != (self.kind, self.id):
            return False
        return jti == self.jti if self.jti else issued_at <= self.before


def parse_revocation(data: bytes | str) -> Revocation:
    """The event in ``data``; ``ValueError`` when it is not a valid event."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("revocation: not JSON") from exc
    if not isinstance(raw, dict):
        raise ValueError("revocation: not an object")
    kind, pid, jti, before = raw.get("kind"), raw.get("id"), raw.get("jti"), raw.get("before")
    if kind not in KINDS or not isinstance(pid, str) or not pid:
        raise ValueError("revocation: kind and id required")
    if isinstance(jti, str) and jti and before is None:
        return Revocation(kind, pid, jti=jti)
    if jti is None and isinstance(before, int | float) and not isinstance(before, bool):
        return Revocation(kind, pid, before=float(before))
    raise ValueError("revocation: exactly one of jti and before")
