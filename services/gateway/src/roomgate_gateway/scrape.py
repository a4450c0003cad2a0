"""What the gateway reads at each Prometheus scrape, not per message: Redis's ``INFO memory``
(there is no Redis exporter in the stack; every gateway reports the Redis it uses, the
dashboard takes the max), the auth breaker's state, and the limits the saturation alert
compares against."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from roomgate_gateway.breaker import BreakerState
from roomgate_gateway.gateway import Gateway
from roomgate_gateway.store import BUS_ERRORS

log = logging.getLogger(__name__)

# INFO memory field -> the `field` label of roomgate_gateway_redis_memory_bytes.
REDIS_MEMORY_FIELDS = {
    "used_memory": "used",
    "used_memory_rss": "rss",
    "used_memory_peak": "peak",
    "maxmemory": "maxmemory",
}
INFO_TIMEOUT = 0.5


async def refresh(gateway: Gateway) -> None:
    """Update the scrape-time gauges. A slow or down Redis leaves the last values (the
    scrape itself must answer; ``roomgate_gateway_redis_up`` says Redis is down)."""
    m = gateway.metrics
    m.max_rooms.set(gateway.settings.max_rooms_per_gateway)
    m.auth_breaker_open.set(0 if gateway.auth.breaker.state is BreakerState.CLOSED else 1)
    try:
        info: Any = await asyncio.wait_for(gateway.store.memory_info(), INFO_TIMEOUT)
    except (TimeoutError, *BUS_ERRORS):
        return
    except Exception:  # a scrape never fails for want of Redis
        log.debug("redis INFO memory failed", exc_info=True)
        return
    for key, label in REDIS_MEMORY_FIELDS.items():
        value = _field(info, key)
        if value is not None:
            m.redis_memory.labels(label).set(value)


def _field(info: Any, key: str) -> float | None:
    """``info[key]``; a cluster client answers per node: the sum over the nodes."""
    if not isinstance(info, dict):
        return None
    if key in info:
        return float(info[key])
    values = [float(v[key]) for v in info.values() if isinstance(v, dict) and key in v]
    return sum(values) if values else None
