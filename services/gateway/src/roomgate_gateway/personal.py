"""Personal rooms and mailbox delivery. At its welcome a connection joins its personal
rooms (``rooms.personal_rooms``); a user's connection gets what waits in the user's
mailbox first, in arrival order, before the user room's live traffic (held meanwhile,
``Connection.hold``/``release``), with a confirmation saying what the mailbox held and
what overflowed. A ``requiresAck`` message of a shared room delivered to a user is filed
in the user's mailbox too, and taken out when acked (``mailboxwrites.py``, batched)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from roomgate_common import mailbox

from roomgate_gateway.fanout import Fanout
from roomgate_gateway.mailboxwrites import MailboxWrites
from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.outbound import Outgoing
from roomgate_gateway.rooms import RoomTable, personal_rooms
from roomgate_gateway.store import BUS_ERRORS, GatewayStore, Mailbox

if TYPE_CHECKING:
    from roomgate_gateway.connection import Connection


class PersonalRooms:
    def __init__(
        self,
        table: RoomTable,
        fanout: Fanout,
        store: GatewayStore,
        writes: MailboxWrites,
        metrics: GatewayMetrics,
    ) -> None:
        self._table = table
        self._fanout = fanout
        self._store = store
        self._writes = writes
        self._metrics = metrics

    async def join(self, conn: Connection) -> None:
        assert conn.principal is not None
        personal = personal_rooms(conn.kind, conn.principal)
        if conn.kind == "user":  # hold the user room's live traffic until the mailbox is out
            conn.hold(personal[0])
        for room in personal:
            await self._table.join(conn, room)
            if not conn.holding(room):
                conn.send_message("subscribed", {"room": room, "personal": True}, room=room)
        if conn.kind == "user":
            await self._deliver_mailbox(conn, personal[0])

    async def _deliver_mailbox(self, conn: Connection, user_room: str) -> None:
        """What waits in the user's mailbox, in arrival order, before live traffic."""
        assert conn.principal is not None
        try:
            box = await self._store.read_mailbox(conn.principal.id)
        except BUS_ERRORS:
            box = Mailbox([], [], 0)
        waiting: list[Outgoing] = []
        gone: list[str] = []
        for envelope_id, raw in zip(box.ids, box.payloads, strict=True):
            out = self._fanout.from_bus(None, raw) if raw is not None else None
            if out is None:
                gone.append(envelope_id)
            else:
                waiting.append(out)
        mine = [o for o in waiting if o.room == user_room]
        last = max((o.offset for o in mine), default=0)
        evicted = box.evicted
        # The user room's confirmation says what the mailbox held, and what overflowed.
        conn.send_message(
            "subscribed",
            {
                "room": user_room,
                "personal": True,
                "mailbox": len(waiting),
                "recovered": evicted == 0,
                **({"missed": evicted} if evicted else {}),
            },
            room=user_room,
        )
        conn.release(
            user_room, waiting, upto=last, epoch=mine[-1].epoch if mine else "", batched=False
        )
        self._metrics.mailbox_delivered.inc(len(waiting))
        for envelope_id in gone:  # expired or unreadable: nothing to wait for
            self._writes.remove(conn.principal.id, envelope_id)

    def keep_until_acked(self, conn: Connection, out: Outgoing) -> None:
        """A requiresAck message of a shared room, delivered to a user: file it in the user's
        mailbox too, so it survives a reconnect until acked. (User rooms are filed at publish.)"""
        if conn.kind != "user" or out.room is None or mailbox.mailbox_user(out.room):
            return
        assert conn.principal is not None
        assert out.ack_id is not None
        payload = f"{out.offset} {out.epoch} {out.frame}"
        self._writes.file(conn.principal.id, out.ack_id, payload, out.priority)

    def acked(self, conn: Connection, ack_id: str) -> None:
        """The user acked ``ack_id``: out of the mailbox."""
        assert conn.principal is not None
        self._writes.remove(conn.principal.id, ack_id)
