"""Recovery, without I/O: what a client that says where it stopped gets back, and the gate
that keeps live messages and replayed history from overlapping or leaving a gap.

Three paths replay history next to the live stream: ``subscribe`` with ``since`` (the room's
history stream), the mailbox at connect (the user room), and the bus catch-up after the
gateway's pub/sub connection came back (every served room). All three use what is here:

- ``needs_history`` / ``outcome`` decide, from the client's ``since``, the room's epoch and
  top offset and the first history entry still kept, whether the client is *recovered* (the
  replay covers everything it missed), *missed M* (history no longer reaches back) or in a
  *new epoch* (the room's history was lost: reload).
- ``RecoveryGate`` (one per connection, only while a replay is under way) holds a room's live
  messages while its history is read, releases those the replay did not cover, and then drops
  the late live copies of replayed offsets (the history read and the pub/sub stream are two
  Redis connections, so a live copy can arrive after the replay).
- ``RoomPositions`` (one per gateway) remembers the last offset handed to each served room, so
  a catch-up read that overlaps the live stream delivers nothing twice.

Offsets are per room and per epoch, counted from 1; offset 0 means "not a room event".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Positioned(Protocol):
    """What the gate needs of a message: the room, epoch and offset it was published at."""

    @property
    def room(self) -> str | None: ...

    @property
    def epoch(self) -> str: ...

    @property
    def offset(self) -> int: ...


M = TypeVar("M", bound=Positioned)


# ---------------------------------------------------------------------------- the decision
def needs_history(since_epoch: str, since_offset: int, epoch: str, top: int) -> bool:
    """Whether the room's history can answer ``since`` at all: same epoch, and not ahead of
    the room (a client ahead of the room holds offsets of another history)."""
    return bool(epoch) and epoch == since_epoch and since_offset <= top


@dataclass(frozen=True, slots=True)
class Outcome:
    recovered: bool
    # How many messages the client missed for good (None: unknown, e.g. a new epoch)
    missed: int | None = None


NOT_RECOVERED = Outcome(False)


def outcome(since_offset: int, top: int, first: int | None, first_expired: bool) -> Outcome:
    """The answer once the history after ``since_offset`` was read: ``first`` is the offset
    of the first entry kept (None when there is none), ``first_expired`` whether it is older
    than the room's age bound (trimmed in all but name). Recovered when the history starts
    right after ``since_offset`` or the client is already at the top."""
    if since_offset == top:
        return Outcome(True)
    start = top + 1 if first is None else first
    if first is not None and first_expired:
        start = -1
    if start == since_offset + 1:
        return Outcome(True)
    return Outcome(False, top - since_offset)


def subscribed_data(room: str, epoch: str, result: Outcome, replayed: int) -> dict[str, object]:
    """The ``subscribed`` reply to a subscribe with ``since`` (docs/protocol.md)."""
    data: dict[str, object] = {"room": room, "recovered": result.recovered, "epoch": epoch}
    if result.recovered:
        data["replayed"] = replayed
    elif result.missed is not None:
        data["missed"] = result.missed
    return data


# ---------------------------------------------------------------------------- the gate
class RecoveryGate(Generic[M]):
    """One connection's rooms under replay. ``admit`` is asked for every live message of the
    connection while the gate exists; it holds, drops or lets through."""

    __slots__ = ("_held", "_replayed")

    def __init__(self) -> None:
        # room -> live messages held back while its history is replayed
        self._held: dict[str, list[M]] = {}
        # room -> (epoch, offset) a finished replay reached: live copies at or below it drop
        self._replayed: dict[str, tuple[str, int]] = {}

    @property
    def idle(self) -> bool:
        """Nothing held, nothing to skip: the connection can drop the gate."""
        return not self._held and not self._replayed

    def holding(self, room: str) -> bool:
        return room in self._held

    def hold(self, room: str) -> None:
        """Hold ``room``'s live messages from now until ``release``."""
        self._held.setdefault(room, [])

    def admit(self, message: M) -> bool:
        """True when ``message`` is to be delivered now."""
        room = message.room
        if room is None:
            return True
        held = self._held.get(room)
        if held is not None:
            held.append(message)
            return False
        mark = self._replayed.get(room)
        if mark is None or not message.offset:
            return True
        if message.epoch == mark[0] and message.offset <= mark[1]:
            return False  # already delivered by the replay
        del self._replayed[room]  # the live stream is past the replay
        return True

    def release(self, room: str, *, upto: int, epoch: str = "", recovered: bool = True) -> list[M]:
        """The replay of ``room`` up to offset ``upto`` (of ``epoch``) was handed over: the
        held live messages it did not cover, in arrival order. From now on live copies of
        that epoch at or below ``upto`` are dropped. Not ``recovered`` (nothing replayed):
        every held message is released and nothing is skipped."""
        held = self._held.pop(room, [])
        if not recovered:
            return held
        if upto > 0:
            self._replayed[room] = (epoch, upto)
        return [m for m in held if m.offset > upto]


# ---------------------------------------------------------------------------- the gateway's
class RoomPositions:
    """The last (epoch, offset) handed to each served room's members on this gateway."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, int]] = {}

    def advance(self, room: str, epoch: str, offset: int) -> bool:
        """Record ``offset`` as delivered; False when it was already (a duplicate)."""
        seen = self._last.get(room)
        if seen is not None and seen[0] == epoch and offset <= seen[1]:
            return False
        self._last[room] = (epoch, offset)
        return True

    def forget(self, room: str) -> None:
        self._last.pop(room, None)

    def items(self) -> list[tuple[str, tuple[str, int]]]:
        """A copy: the catch-up reads history for each while the live stream goes on."""
        return list(self._last.items())

    def __len__(self) -> int:
        return len(self._last)
