"""The room table of this gateway: its registered connections, who is in which room, and
each principal's connections (``of_principal``: revocations and ACL changes look a
principal up, never scan). Joining a room joins the bus too (the gateway subscribes a
room's channel while it has a local member, ``bus.py``); the last member leaving forgets
the room's delivery position (``recovery.RoomPositions``).

The table is the only writer of ``members`` (built by the gateway before the bus, which
delivers from it: ``fanout.py``) and of the room set of each connection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.recovery import RoomPositions

if TYPE_CHECKING:
    from roomgate_gateway.clients import Principal
    from roomgate_gateway.connection import Connection


class Membership(Protocol):
    """The bus's side of a room's membership (``bus.RoomBus``)."""

    async def join(self, room: str) -> None: ...
    async def leave(self, room: str) -> None: ...


def personal_rooms(kind: str, principal: Principal) -> list[str]:
    """The rooms a connection is in from its welcome: ``user-{id}`` for a user (first),
    ``session-{id}`` for a session."""
    rooms = []
    if kind == "user":
        rooms.append(f"user-{principal.id}")
    if principal.session_id:
        rooms.append(f"session-{principal.session_id}")
    return rooms


class RoomTable:
    def __init__(
        self,
        members: dict[str, set[Connection]],
        bus: Membership,
        positions: RoomPositions,
        metrics: GatewayMetrics,
    ) -> None:
        self.connections: set[Connection] = set()
        self.rooms = members
        # (kind, id) -> that principal's connections here (a list: usually one, and a set
        # costs 216 bytes per connection)
        self.by_user: dict[tuple[int, str], list[Connection]] = {}
        self._bus = bus
        self._positions = positions
        self._metrics = metrics

    def of_principal(self, kind: int, principal_id: str) -> Iterable[Connection]:
        return self.by_user.get((kind, principal_id), ())

    def members(self, room: str) -> set[Connection]:
        return self.rooms.get(room, set())

    def add(self, conn: Connection) -> None:
        """A connection was admitted (its principal is known)."""
        assert conn.principal is not None
        self.connections.add(conn)
        self.by_user.setdefault((conn.principal.kind, conn.principal.id), []).append(conn)
        self._metrics.connections.set(len(self.connections))

    async def remove(self, conn: Connection) -> bool | None:
        """The connection leaves every room and the table. None when it was not in the
        table; else whether its principal still has connections here."""
        if conn not in self.connections:
            return None
        self.connections.discard(conn)
        assert conn.principal is not None
        users = self.by_user.get((conn.principal.kind, conn.principal.id))
        if users is not None and conn in users:
            users.remove(conn)
            if not users:
                del self.by_user[(conn.principal.kind, conn.principal.id)]
        for room in list(conn.rooms):
            await self.leave(conn, room)
        self._metrics.connections.set(len(self.connections))
        return users is not None and bool(users)

    async def join(self, conn: Connection, room: str) -> None:
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = set()
        members.add(conn)
        conn.joined(room)
        self._metrics.subscriptions.inc()
        await self._bus.join(room)

    async def leave(self, conn: Connection, room: str) -> None:
        members = self.rooms.get(room)
        if members is None or conn not in members:
            return
        members.discard(conn)
        conn.left(room)
        if not members:
            del self.rooms[room]
            self._positions.forget(room)
        self._metrics.subscriptions.dec()
        await self._bus.leave(room)
