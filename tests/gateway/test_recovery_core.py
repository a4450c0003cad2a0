"""The pure recovery core (recovery.py): the recovered / missed / new-epoch decision, the
per-connection gate between a replay and the live stream, the gateway's room positions —
values only. The end-to-end behaviour is in test_recovery.py and test_mailbox.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from roomgate_gateway import recovery
from roomgate_gateway.recovery import Outcome, RecoveryGate, RoomPositions


@dataclass(frozen=True)
class Msg:
    room: str | None
    epoch: str
    offset: int


# ---------------------------------------------------------------------------- the decision
@pytest.mark.parametrize(
    ("since_epoch", "since", "epoch", "top", "needed"),
    [
        ("e1", 3, "e1", 10, True),
        ("e1", 10, "e1", 10, True),  # at the top: recovered with nothing to replay
        ("e1", 11, "e1", 10, False),  # ahead of the room: another history
        ("e0", 3, "e1", 10, False),  # a new epoch: history lost, reload
        ("e1", 0, "", 0, False),  # a room that never had a message
    ],
)
def test_whether_history_can_answer(
    since_epoch: str, since: int, epoch: str, top: int, needed: bool
) -> None:
    assert recovery.needs_history(since_epoch, since, epoch, top) is needed


@pytest.mark.parametrize(
    ("since", "top", "first", "expired", "expected"),
    [
        (3, 10, 4, False, Outcome(True)),  # history starts right after: everything replayed
        (10, 10, None, False, Outcome(True)),  # nothing missed
        (3, 10, 8, False, Outcome(False, 7)),  # 4..7 trimmed: 7 missed (top - since)
        (3, 10, None, False, Outcome(False, 7)),  # history trimmed entirely
        (3, 10, 4, True, Outcome(False, 7)),  # kept but older than the room's age bound
        (0, 5, 1, False, Outcome(True)),  # from the start
    ],
)
def test_the_outcome_of_a_history_read(
    since: int, top: int, first: int | None, expired: bool, expected: Outcome
) -> None:
    assert recovery.outcome(since, top, first, expired) == expected


def test_the_subscribed_reply_says_replayed_or_missed() -> None:
    ok = recovery.subscribed_data("r", "e1", Outcome(True), 3)
    assert ok == {"room": "r", "recovered": True, "epoch": "e1", "replayed": 3}
    gap = recovery.subscribed_data("r", "e1", Outcome(False, 7), 0)
    assert gap == {"room": "r", "recovered": False, "epoch": "e1", "missed": 7}
    lost = recovery.subscribed_data("r", "e2", recovery.NOT_RECOVERED, 0)
    assert lost == {"room": "r", "recovered": False, "epoch": "e2"}


# ---------------------------------------------------------------------------- the gate
def test_the_gate_holds_only_the_room_under_replay() -> None:
    gate: RecoveryGate[Msg] = RecoveryGate()
    gate.hold("a")
    assert gate.holding("a")
    assert not gate.holding("b")
    assert not gate.admit(Msg("a", "e", 5))
    assert gate.admit(Msg("b", "e", 5))
    assert gate.admit(Msg(None, "", 0))  # the gateway's own replies
    assert gate.release("a", upto=4, epoch="e") == [Msg("a", "e", 5)]
    assert not gate.idle  # late copies of 1..4 are still to be dropped


def test_late_copies_are_dropped_until_the_live_stream_is_past_the_replay() -> None:
    gate: RecoveryGate[Msg] = RecoveryGate()
    gate.hold("a")
    assert gate.release("a", upto=4, epoch="e") == []
    assert not gate.admit(Msg("a", "e", 3))
    assert not gate.admit(Msg("a", "e", 4))
    assert gate.admit(Msg("a", "e", 5))
    assert gate.idle
    assert gate.admit(Msg("a", "e", 4))  # the mark is gone: nothing filters any more


def test_another_epoch_is_never_a_late_copy() -> None:
    gate: RecoveryGate[Msg] = RecoveryGate()
    gate.hold("a")
    gate.release("a", upto=4, epoch="e1")
    assert gate.admit(Msg("a", "e2", 1))


def test_not_recovered_releases_everything_held_and_skips_nothing() -> None:
    gate: RecoveryGate[Msg] = RecoveryGate()
    gate.hold("a")
    held = [Msg("a", "e", 1), Msg("a", "e", 2)]
    for m in held:
        assert not gate.admit(m)
    assert gate.release("a", upto=0, epoch="e", recovered=False) == held
    assert gate.idle


@given(
    top=st.integers(0, 30),
    data=st.data(),
)
def test_replay_and_live_interleaved_leave_no_gap_and_no_duplicate(
    top: int, data: st.DataObject
) -> None:
    """Whatever the moment the live stream starts (before the history read, which reads up
    to ``top``), and however many live messages arrive before the replay is handed over,
    the client gets since+1 .. last exactly once, in order."""
    since = data.draw(st.integers(0, top), label="since")
    joined_at = data.draw(st.integers(0, top), label="live from after")  # join before read
    last = data.draw(st.integers(top, top + 30), label="last published")
    live = [Msg("r", "e", o) for o in range(joined_at + 1, last + 1)]
    early = data.draw(st.integers(0, len(live)), label="live before release")
    replay = [Msg("r", "e", o) for o in range(since + 1, top + 1)]

    gate: RecoveryGate[Msg] = RecoveryGate()
    delivered: list[int] = []
    gate.hold("r")
    for m in live[:early]:
        if gate.admit(m):
            delivered.append(m.offset)
    delivered += [m.offset for m in replay]  # the replay goes past the gate
    delivered += [m.offset for m in gate.release("r", upto=top, epoch="e")]
    for m in live[early:]:
        if gate.admit(m):
            delivered.append(m.offset)
    assert delivered == list(range(since + 1, last + 1))
    # the skip mark goes with the first live message past the replay (none: it stays)
    assert gate.idle == (top == 0 or any(m.offset > top for m in live[early:]))


# ---------------------------------------------------------------------------- positions
def test_room_positions_drop_what_was_delivered_and_restart_with_an_epoch() -> None:
    positions = RoomPositions()
    assert positions.advance("r", "e1", 1)
    assert positions.advance("r", "e1", 2)
    assert not positions.advance("r", "e1", 2)  # a catch-up overlapping the live stream
    assert not positions.advance("r", "e1", 1)
    assert positions.advance("r", "e2", 1)  # a new epoch starts over
    assert positions.items() == [("r", ("e2", 1))]
    positions.forget("r")
    assert len(positions) == 0
    assert positions.advance("r", "e2", 1)


@given(st.lists(st.integers(1, 40), max_size=80))
def test_a_catch_up_overlapping_the_stream_delivers_each_offset_once(
    arrivals: list[int],
) -> None:
    """Live and catch-up copies arrive in any order of overlap; offsets only move forward."""
    positions = RoomPositions()
    delivered = [o for o in arrivals if positions.advance("r", "e", o)]
    expected, top = [], 0
    for o in arrivals:  # each arrival beyond everything before it, and only those
        if o > top:
            expected.append(o)
            top = o
    assert delivered == expected
