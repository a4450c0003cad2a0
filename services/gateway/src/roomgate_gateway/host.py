"""What a ``Connection`` needs of the gateway that hosts it, and nothing more: the
settings and the live limits, the metrics and tracer, the write coalescer and handshake
bound, and the calls a connection makes in its life (authenticate, register, personal
rooms, subscribe, publish, acks, the per-user rate). ``Gateway`` provides it; a
connection never sees the gateway's parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from roomgate_gateway import protocol as p
    from roomgate_gateway.budget import InboundBudgetPolicy
    from roomgate_gateway.clients import Principal
    from roomgate_gateway.coalescing import WriteCoalescer
    from roomgate_gateway.connection import Connection
    from roomgate_gateway.handshakes import Handshakes
    from roomgate_gateway.limits import Limits
    from roomgate_gateway.metrics import GatewayMetrics
    from roomgate_gateway.outbound import Outgoing
    from roomgate_gateway.settings import GatewaySettings
    from roomgate_gateway.tasks import Tasks


class ConnectionHost(Protocol):
    # Read by the connection (the limits change with the live policy: read, never kept).
    settings: GatewaySettings
    limits: Limits
    metrics: GatewayMetrics
    tracer: Tracer
    budget_policy: InboundBudgetPolicy
    coalescer: WriteCoalescer
    handshakes: Handshakes
    tasks: Tasks  # the gateway's task owner: a connection's close from synchronous code

    @property
    def draining(self) -> bool: ...

    # The connection's life: auth, admission, personal rooms, leaving.
    async def authenticate(self, token: str) -> Principal: ...
    async def register(self, conn: Connection) -> str | None: ...
    async def unregister(self, conn: Connection) -> None: ...
    async def join_personal_rooms(self, conn: Connection) -> None: ...

    # Client messages.
    async def within_rate(self, conn: Connection) -> bool: ...
    async def subscribe(self, conn: Connection, msg: p.Subscribe) -> None: ...
    async def unsubscribe(self, conn: Connection, msg: p.Unsubscribe) -> None: ...
    async def client_publish(self, conn: Connection, msg: p.Event) -> None: ...
    async def recheck(self, conn: Connection, rooms: list[str] | None = None) -> None: ...
    def acked(self, conn: Connection, ack_id: str) -> None: ...

    # Delivery: a requiresAck message of a shared room kept in the user's mailbox.
    def keep_until_acked(self, conn: Connection, out: Outgoing) -> None: ...
