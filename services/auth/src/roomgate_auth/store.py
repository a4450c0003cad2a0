"""The auth service's state in Redis: revocation marks and agent API keys.

Keys come from ``roomgate_common.keys``; redis connection failures surface as
``BusUnavailable`` (``roomgate_common.redis_adapter.translate_errors``).

* ``revoked_token(jti)``: present while that token is revoked; expires with the token.
* ``revoked_before(kind, id)``: a Unix time (float); tokens of that principal issued at or
  before it are revoked. Lives ``max_ttl + leeway`` seconds, longer than any token accepted.
* ``api_key(digest)``: hash describing the agent an API key stands for.

Each revocation is also announced on ``keys.REVOCATIONS_CHANNEL`` once it is stored
(``roomgate_common.revocation``): the gateways close the revoked live sessions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from roomgate_common import keys
from roomgate_common.identity import Principal, PrincipalKind
from roomgate_common.redis_adapter import Redis, translate_errors
from roomgate_common.revocation import Revocation

from roomgate_auth.tokens import TokenPolicy, api_key_digest, new_api_key

# Keeps the later of two revoke-all times (replicas' clocks differ) and renews the expiry.
_REVOKE_BEFORE = """
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
"""


class AuthStore:
    """Revocation and API keys over one Redis client."""

    def __init__(self, redis: Redis, policy: TokenPolicy) -> None:
        self._redis = redis
        self._policy = policy
        self._revoke_before = redis.register_script(_REVOKE_BEFORE)

    async def is_revoked(self, principal: Principal) -> bool:
        """True when the token's jti is revoked or its principal was revoked after it was
        issued. One round trip."""
        (revoked,) = await self.are_revoked([principal])
        return revoked

    async def are_revoked(self, principals: Sequence[Principal]) -> list[bool]:
        """``is_revoked`` of each principal, in order, in one pipeline: one round trip for
        the whole batch (none for an empty one)."""
        if not principals:
            return []
        async with translate_errors("revocation check"):
            pipe = self._redis.pipeline(transaction=False)
            for principal in principals:
                pipe.exists(keys.revoked_token(principal.token_id))
                pipe.get(keys.revoked_before(principal.kind.value, principal.id))
            replies = await pipe.execute()
        return [
            _revoked(principal, by_jti, before)
            for principal, by_jti, before in zip(
                principals, replies[0::2], replies[1::2], strict=True
            )
        ]

    async def revoke_token(self, principal: Principal) -> None:
        """Mark the token revoked, then tell the gateways (they close its live sessions)."""
        async with translate_errors("token revocation"):
            await self._redis.set(
                keys.revoked_token(principal.token_id), b"1", ex=self._policy.remaining(principal)
            )
            await self._announce(
                Revocation(principal.kind.value, principal.id, jti=principal.token_id)
            )

    async def revoke_all(self, kind: PrincipalKind, principal_id: str) -> float:
        """Revoke every token of one principal issued up to now; returns that time."""
        now = time.time()
        lifetime = self._policy.max_ttl + int(self._policy.leeway) + 1
        async with translate_errors("principal revocation"):
            await self._revoke_before(
                keys=[keys.revoked_before(kind.value, principal_id)],
                args=[repr(now), lifetime],
            )
            await self._announce(Revocation(kind.value, principal_id, before=now))
        return now

    async def _announce(self, revocation: Revocation) -> None:
        # After the mark is stored: a gateway that acts on the event and a client that
        # reconnects at once both see the token revoked.
        await self._redis.publish(keys.REVOCATIONS_CHANNEL, revocation.to_json())

    async def create_api_key(self, agent: Principal) -> tuple[str, str]:
        """Store a new API key for ``agent``; returns the key (shown once) and its key_id."""
        api_key = new_api_key()
        digest = api_key_digest(api_key)
        mapping = {
            "kind": agent.kind.value,
            "id": agent.id,
            "roles": json.dumps(agent.roles),
            "perms": json.dumps(agent.permissions),
            "groups": json.dumps(agent.group_ids),
            "teams": json.dumps(agent.team_ids),
            "created_at": repr(time.time()),
        }
        async with translate_errors("api key creation"):
            await self._redis.hset(keys.api_key(digest), mapping=mapping)  # type: ignore[arg-type]
        return api_key, digest

    async def api_key_principal(self, api_key: str) -> Principal | None:
        """The agent an API key stands for (None for an unknown or deleted key)."""
        async with translate_errors("api key lookup"):
            fields = await self._redis.hgetall(keys.api_key(api_key_digest(api_key)))
        if not fields:
            return None
        values = {_text(k): _text(v) for k, v in fields.items()}
        return Principal(
            kind=PrincipalKind(values["kind"]),
            id=values["id"],
            roles=tuple(json.loads(values["roles"])),
            permissions=tuple(json.loads(values["perms"])),
            group_ids=tuple(json.loads(values["groups"])),
            team_ids=tuple(json.loads(values["teams"])),
        )

    async def delete_api_key(self, digest: str) -> bool:
        """Delete the API key with this key_id; False when there was none."""
        async with translate_errors("api key deletion"):
            return bool(await self._redis.delete(keys.api_key(digest)))


def _revoked(principal: Principal, by_jti: int, before: bytes | None) -> bool:
    """The revocation verdict on one token from its two replies (EXISTS of the jti mark,
    GET of the principal's revoke-all time)."""
    if by_jti:
        return True
    return before is not None and principal.issued_at <= float(before)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
