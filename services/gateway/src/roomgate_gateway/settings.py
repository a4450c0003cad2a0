"""Gateway settings: one typed object, read once at start from ``ROOMGATE_*`` variables."""

from __future__ import annotations

import ipaddress
import os
import socket

from pydantic import Field, SecretStr, field_validator
from roomgate_common.jsondepth import MAX_JSON_DEPTH
from roomgate_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    listen: str = "127.0.0.1:8080"
    # gRPC PublishService for backends; empty disables it.
    grpc_listen: str = ""
    # Stable name of this gateway in Redis (presence, counters); default host:pid.
    gateway_id: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    auth_addr: str = "127.0.0.1:50051"
    roomauthz_addr: str = "127.0.0.1:50052"
    # Escalation service; when set, client alert_acknowledged/alert_resolved go there, with
    # the gateway's service token obtained from auth for this API key (auth has its digest
    # in ROOMGATE_SERVICE_KEYS; see roomgate_gateway.servicetoken).
    escalation_addr: str = ""
    escalation_api_key: SecretStr = SecretStr("")
    # Comma-separated IP addresses or CIDRs of the proxies whose X-Forwarded-For is trusted
    # (per-IP limits); empty: none (the TCP peer is the client). Anything else ("*", host
    # names) is refused at start: a client must never choose the IP it is counted under.
    forwarded_allow_ips: str = "127.0.0.1"

    # --- limits; the operator's live policy overrides these without a restart ---------
    max_connections_per_ip: int = Field(default=10, ge=1)
    max_connections_per_user: int = Field(default=20, ge=1)
    messages_per_user_per_minute: int = Field(default=100, ge=1)
    max_message_bytes: int = Field(default=65536, ge=256)
    max_subscriptions_per_connection: int = Field(default=100, ge=1)
    heartbeat_interval: float = Field(default=30.0, gt=0)
    heartbeat_timeout: float = Field(default=75.0, gt=0)
    auth_deadline: float = Field(default=5.0, gt=0)
    outbound_queue_size: int = Field(default=256, ge=1)

    # --- fixed limits ---------------------------------------------------------------------
    # Seconds a request's header block may take to arrive (from the connection's first
    # byte, or the request's); slower connections are closed (slowloris).
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    # Hard ceiling of a WebSocket frame (the transport refuses bigger ones with 1009).
    max_frame_bytes: int = Field(default=1 << 20, ge=1024)
    max_rooms_per_gateway: int = Field(default=100_000, ge=1)
    # Connects of one principal per calendar minute, cluster-wide; beyond: 4029.
    max_connects_per_principal_per_minute: int = Field(default=60, ge=1)
    # Handshakes (accept -> welcome) under way at once on this gateway; beyond: 1013 at
    # once, so a reconnect storm cannot stall the event loop and its probes (handshakes.py).
    max_pending_connects: int = Field(default=256, ge=1)
    # Agent presence (agent_connected/agent_disconnected) is announced at most once per
    # agent per this many seconds; the state at the window's end wins.
    agent_presence_window: float = Field(default=2.0, gt=0)
    max_inflated_bytes: int = Field(default=256 * 1024, ge=1024)
    max_batch_messages: int = Field(default=50, ge=1)
    # Per-connection inbound budget (budget.py): every message counts — pings (at
    # inbound_ping_cost of a message), acks, batch/compressed and each message inside —
    # refilled at inbound_rate per second up to inbound_burst; over it messages are dropped,
    # inbound_burst more and the connection is closed 4030. The read loop yields to the
    # event loop every inbound_yield_every messages.
    inbound_rate: float = Field(default=200.0, gt=0)
    inbound_burst: float = Field(default=500.0, ge=1)
    inbound_ping_cost: float = Field(default=0.1, gt=0, le=1)
    inbound_yield_every: int = Field(default=16, ge=1)
    # Arrays/objects nested deeper than this are refused before decoding (publish APIs).
    max_json_depth: int = Field(default=MAX_JSON_DEPTH, ge=2, le=256)
    # Messages per outbound `batch` frame when several wait for one client; 1 disables.
    outbound_batch_max: int = Field(default=10, ge=1)
    # Outbound messages at least this big are sent `compressed` to clients that asked.
    compression_threshold: int = Field(default=1024, ge=64)
    token_expiry_warning: float = Field(default=60.0, ge=0)
    authz_cache_ttl: float = Field(default=5.0, ge=0)
    auth_timeout: float = Field(default=2.0, gt=0)
    # Room decisions asked for together go to roomauthz in one AuthorizeBatch of at most
    # authz_batch_max (<= roomauthz's ROOMGATE_MAX_BATCH), at most authz_calls_in_flight
    # calls at a time.
    authz_batch_max: int = Field(default=500, ge=1)
    authz_calls_in_flight: int = Field(default=4, ge=1)
    # Tokens to verify asked for together go to auth in one AuthenticateBatch of at most
    # auth_batch_max (<= auth's ROOMGATE_MAX_BATCH), at most auth_calls_in_flight calls at a
    # time.
    auth_batch_max: int = Field(default=100, ge=1)
    auth_calls_in_flight: int = Field(default=4, ge=1)
    # Tokens waiting for one of those calls; beyond, unavailable at once (1013 / 503).
    auth_queue_max: int = Field(default=1000, ge=1)
    # Longer tokens are refused before any call to auth (keep it <= auth's MAX_TOKEN_BYTES).
    max_token_bytes: int = Field(default=8192, ge=512)
    auth_breaker_failures: int = Field(default=5, ge=1)
    auth_breaker_recovery: float = Field(default=10.0, gt=0)
    # Publishing API: the permission a service principal needs to publish.
    publish_permission: str = "publish"
    # Publish APIs (roomgate_common.credentials): a service token auth verified is kept
    # this many seconds (never past its expiry; a revocation or a subscriber reconnect
    # drops it), so a backend's next calls skip auth; 0: auth verifies every call. At most
    # ..._size kept.
    publish_credential_ttl: float = Field(default=30.0, ge=0, le=3600)
    publish_credential_cache_size: int = Field(default=10_000, ge=1)
    # POST /api/v1/publish/batch: events per request, and bytes of its body.
    publish_batch_max: int = Field(default=100, ge=1, le=10_000)
    publish_batch_max_bytes: int = Field(default=1 << 20, ge=1024)

    # --- shutdown ----------------------------------------------------------------------
    # SIGTERM: reconnect hints and 1012 closes are spread over this many seconds (waves).
    drain_seconds: float = Field(default=10.0, ge=0)
    drain_waves: int = Field(default=10, ge=1)
    reconnect_jitter_ms: int = Field(default=5000, ge=0)

    presence_interval: float = Field(default=5.0, gt=0)
    # /readyz: a dependency check (Redis PING, auth health) answered decides at once; one
    # without an answer within ready_check_timeout keeps the dependency's last good answer
    # for ready_grace seconds (readiness.py: a busy dependency is not a lost one).
    ready_check_timeout: float = Field(default=1.0, gt=0)
    ready_grace: float = Field(default=10.0, ge=0)

    # --- Redis client ----------------------------------------------------------------------
    # The command client's pool: at most redis_pool_size connections; a command finding
    # none free waits redis_pool_timeout seconds, then fails as "busy" (never "Redis down").
    redis_pool_size: int = Field(default=64, ge=2)
    redis_pool_timeout: float = Field(default=2.0, gt=0)
    # The hot commands of one loop turn go in one pipeline of at most redis_pipeline_max
    # (roomgate_common.redis_adapter.TurnPipeline; the rest in the next pipeline).
    redis_pipeline_max: int = Field(default=1000, ge=1)
    # Mailbox writes (filing requiresAck deliveries, removing acked messages) of one event-
    # loop turn go in one pipeline of at most mailbox_batch_max operations; at most
    # mailbox_backlog_max wait behind a slow Redis, the rest are dropped and counted.
    mailbox_batch_max: int = Field(default=1000, ge=1)
    mailbox_backlog_max: int = Field(default=100_000, ge=1)

    # --- acknowledged delivery (server -> client) ----------------------------------------
    # A `requiresAck` message not acked within ack_timeout is sent again, up to ack_retries
    # times on the same connection; it stays in the user's mailbox until acked.
    ack_timeout: float = Field(default=5.0, gt=0)
    ack_retries: int = Field(default=3, ge=0)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR (list the proxies' addresses; "
                    "empty trusts none)"
                ) from None
        return ",".join(items)

    @property
    def trusted_proxies(self) -> list[str]:
        """The proxies whose X-Forwarded-For is trusted (empty: none)."""
        return [item for item in self.forwarded_allow_ips.split(",") if item]
