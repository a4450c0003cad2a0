"""The gateway's Prometheus metrics (its own registry; served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from roomgate_gateway.codes import CloseCode, ErrorCode

LAG_SAMPLE_SECONDS = 0.25  # how often upkeep samples the event loop's lag
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Connect outcomes (connection.py, gateway.register), exported at 0 from the start.
CONNECT_OUTCOMES = (
    "ok",
    "unauthorized",
    "auth_timeout",
    "auth_unavailable",
    "draining",
    "gone",
    "limit_ip",
    "limit_user",
    "redis_unavailable",
)
# Connection lifetimes: from a page view (seconds) to an agent's week-long session.
DURATION_BUCKETS = (1, 10, 60, 300, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 7 * 86400)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "roomgate_gateway"
        self.connections = Gauge(f"{p}_connections", "Open authenticated connections", registry=r)
        self.connects = Counter(
            f"{p}_connects", "Connection attempts by outcome", ["outcome"], registry=r
        )
        self.closes = Counter(
            f"{p}_closes", "Connections closed, by close code", ["code"], registry=r
        )
        self.messages_in = Counter(
            f"{p}_messages_in", "Client messages received, by type", ["type"], registry=r
        )
        self.messages_out = Counter(
            f"{p}_messages_out", "Messages sent to clients, by type", ["type"], registry=r
        )
        self.deliveries = Counter(
            f"{p}_deliveries",
            "Room events written to client sockets (fan-out, replays, mailbox, resends)",
            registry=r,
        )
        self.api_publishes = Counter(
            f"{p}_api_publishes",
            "Publish API (HTTP, batch, gRPC): events published, and requests refused by code",
            ["outcome"],
            registry=r,
        )
        self.socket_writes = Counter(
            f"{p}_socket_writes",
            "Writes to client sockets; one carries every frame a loop turn handed a connection",
            registry=r,
        )
        self.drops = Counter(
            f"{p}_drops", "Messages not delivered, by reason", ["reason"], registry=r
        )
        self.errors = Counter(f"{p}_errors", "Error messages sent, by code", ["code"], registry=r)
        self.queue_depth = Gauge(
            f"{p}_queue_depth", "Messages waiting in outbound queues (all connections)", registry=r
        )
        self.rooms = Gauge(f"{p}_rooms", "Rooms with at least one local member", registry=r)
        self.subscriptions = Gauge(
            f"{p}_subscriptions", "Room memberships on this gateway", registry=r
        )
        self.delivery_latency = Histogram(
            f"{p}_delivery_latency_seconds",
            "Publish (envelope timestamp) to hand-off to the sockets, per message",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # How late the event loop ran a timer (upkeep samples it every LAG_SAMPLE_SECONDS):
        # the wait every frame, probe and publish of this process sees on top of its work.
        self.event_loop_lag = Histogram(
            f"{p}_event_loop_lag_seconds",
            f"How late the event loop ran a timer, sampled every {LAG_SAMPLE_SECONDS} s",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.redis_pipeline_commands = Histogram(
            f"{p}_redis_pipeline_commands",
            "Commands per Redis pipeline of the hot paths (those asked for in one loop turn)",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.auth_latency = Histogram(
            f"{p}_auth_latency_seconds",
            "Authenticate call latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.authz_latency = Histogram(
            f"{p}_authz_latency_seconds",
            "Authorize call latency (cache misses)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_reconnects = Counter(
            f"{p}_redis_reconnects", "Reconnections of the Redis subscriber", registry=r
        )
        self.redis_up = Gauge(
            f"{p}_redis_up", "1 when the Redis subscriber is connected", registry=r
        )
        self.policy_generation = Gauge(
            f"{p}_policy_generation", "Generation of the live policy in force", registry=r
        )
        self.draining = Gauge(f"{p}_draining", "1 while the gateway drains", registry=r)
        self.redeliveries = Counter(
            f"{p}_redeliveries", "requiresAck messages sent again for want of an ack", registry=r
        )
        self.acks = Counter(f"{p}_acks", "Acks received from clients", registry=r)
        self.mailbox_delivered = Counter(
            f"{p}_mailbox_delivered", "Messages delivered from offline mailboxes", registry=r
        )
        # The protocol document's monitoring list (docs/observability.md).
        self.connection_duration = Histogram(
            f"{p}_connection_duration_seconds",
            "Lifetime of authenticated connections, observed when they close",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.recoveries = Counter(
            f"{p}_recoveries",
            "Subscribes with `since` (reconnects): recovered from history, or not (gap lost)",
            ["outcome"],
            registry=r,
        )
        self.bytes_in = Counter(
            f"{p}_received_bytes", "Client message payload received (before parsing)", registry=r
        )
        self.bytes_out = Counter(
            f"{p}_sent_bytes",
            "Message payload handed to client sockets (uncompressed, without WebSocket framing)",
            registry=r,
        )
        self.redis_memory = Gauge(
            f"{p}_redis_memory_bytes",
            "Redis INFO memory fields, read at each scrape (used, rss, peak, maxmemory)",
            ["field"],
            registry=r,
        )
        self.slow_consumer_closes = Counter(
            f"{p}_slow_consumer_closes",
            "Connections closed because their outbound queue overflowed",
            registry=r,
        )
        self.auth_breaker_open = Gauge(
            f"{p}_auth_breaker_open",
            "1 while the auth circuit breaker is not closed (open or probing), read at scrape",
            registry=r,
        )
        self.max_rooms = Gauge(
            f"{p}_max_rooms",
            "Rooms this gateway may serve (ROOMGATE_MAX_ROOMS_PER_GATEWAY)",
            registry=r,
        )
        # Known label values exist at 0 from the start: rate() and increase() cannot see a
        # series' first increment (the first 1013 after a deploy would read as 0/s).
        for outcome in CONNECT_OUTCOMES:
            self.connects.labels(outcome)
        for close in CloseCode:
            self.closes.labels(str(int(close)))
        for error in ErrorCode:
            self.errors.labels(error.value)
        for recovery in ("recovered", "not_recovered"):
            self.recoveries.labels(recovery)
        # process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds,
        # process_max_fds: memory per connection, CPU, and the descriptor ceiling.
        ProcessCollector(registry=r)
