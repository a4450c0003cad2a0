"""The operator's seam to Redis: the live policy the gateways read, their presence, and
their control channel. Redis failures come out as ``BusUnavailable``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from roomgate_common import keys
from roomgate_common.redis_adapter import Redis, translate_errors

from roomgate_operator.policy import GatewayReport, parse_presence


def encode_limits(limits: Mapping[str, int]) -> str:
    """The ``limits`` field of keys.LIVE_POLICY: canonical JSON (sorted keys)."""
    return json.dumps(dict(limits), sort_keys=True, separators=(",", ":"))


class PolicyBus:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def live_policy(self) -> tuple[int, str] | None:
        """(generation, limits JSON) as stored, or None."""
        async with translate_errors("live policy"):
            raw = await self.redis.hmget(keys.LIVE_POLICY, ["generation", "limits"])
        generation, limits = raw
        if generation is None or limits is None:
            return None
        try:
            return int(generation), limits.decode() if isinstance(limits, bytes) else str(limits)
        except ValueError:
            return None

    async def live_source(self) -> str | None:
        """The ``namespace/name`` of the GatewayPolicy the live policy came from."""
        async with translate_errors("live policy"):
            raw = await self.redis.hget(keys.LIVE_POLICY, "source")
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def write_policy(
        self, generation: int, limits: Mapping[str, int], source: str, *, force: bool = False
    ) -> bool:
        """Make keys.LIVE_POLICY hold this policy and tell the gateways (PUBLISH on
        keys.POLICY_CHANGED_CHANNEL). Nothing is written when it already holds it, unless
        ``force`` (a nudge for gateways that missed the message). True when published."""
        encoded = encode_limits(limits)
        if not force and await self.live_policy() == (generation, encoded):
            return False
        async with translate_errors("live policy"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(
                keys.LIVE_POLICY,
                mapping={"generation": generation, "limits": encoded, "source": source},
            )
            pipe.publish(keys.POLICY_CHANGED_CHANNEL, str(generation))
            await pipe.execute()
        return True

    async def presence(self, gateway_ids: Sequence[str]) -> dict[str, GatewayReport]:
        """The live gateways among ``gateway_ids`` (a missing or expired presence: absent)."""
        if not gateway_ids:
            return {}
        async with translate_errors("presence"):
            pipe = self.redis.pipeline(transaction=False)
            for gid in gateway_ids:
                pipe.hgetall(keys.gateway_presence(gid))
            raws = await pipe.execute()
        reports = {}
        for gid, raw in zip(gateway_ids, raws, strict=True):
            report = parse_presence(raw) if raw else None
            if report is not None:
                reports[gid] = report
        return reports

    async def drain(self, gateway_id: str, fraction: float = 1.0) -> int:
        """Ask one gateway to drain; the number of gateways that heard it (0 or 1)."""
        command = json.dumps({"command": "drain", "fraction": fraction})
        async with translate_errors("drain"):
            return int(await self.redis.publish(keys.gateway_control_channel(gateway_id), command))
