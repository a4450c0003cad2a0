"""The pure session core (session.py, acks.py, framing.py): bytes and a clock in, answers,
frames and one next deadline out — values only, no sockets, no event loop."""

from __future__ import annotations

import base64
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from roomgate_gateway.acks import AckTracker
from roomgate_gateway.budget import InboundBudgetPolicy, Verdict
from roomgate_gateway.codes import CloseCode, ErrorCode
from roomgate_gateway.framing import batch_frame, frame_of, text_frame, wire_of
from roomgate_gateway.outbound import Outgoing
from roomgate_gateway.session import (
    TOKEN_EXPIRED_REASON,
    Answer,
    Close,
    GaveUp,
    Resend,
    Session,
    Token,
    WarnExpiry,
)
from roomgate_gateway.state import InvalidTransition, State

POLICY = InboundBudgetPolicy(rate=10, burst=5, ping_cost=0.25, yield_every=3)
MAX = 1024


def session(now: float = 100.0, **kw: float) -> Session[str]:
    args: dict[str, float] = {"auth_deadline": 5.0, "ack_timeout": 2.0, "ack_retries": 2}
    args.update(kw)
    return Session(
        now=now,
        auth_deadline=args["auth_deadline"],
        budget=POLICY,
        ack_timeout=args["ack_timeout"],
        ack_retries=int(args["ack_retries"]),
    )


def opened(now: float = 100.0, **kw: float) -> Session[str]:
    s = session(now, **kw)
    s.opened()
    return s


# ---------------------------------------------------------------------------- before auth
def test_a_token_in_the_first_frame_is_returned() -> None:
    step = Session.first_frame(b'{"type":"auth","token":"t0k"}', MAX)
    assert step == Token("t0k")
    step = Session.first_frame('{"type":"auth","data":{"token":"abc"}}', MAX)
    assert step == Token("abc")


def test_frames_before_auth_are_answered_not_authenticated() -> None:
    step = Session.first_frame(b'{"type":"subscribe","id":"m1","data":{"room":"system"}}', MAX)
    assert step == Answer(ErrorCode.NOT_AUTHENTICATED, "send `auth` first", "m1")
    refresh = Session.first_frame(b'{"type":"refresh","token":"t"}', MAX)
    assert isinstance(refresh, Answer)
    assert refresh.code is ErrorCode.NOT_AUTHENTICATED


def test_garbage_before_auth_is_answered_with_its_parse_error() -> None:
    step = Session.first_frame(b"{not json", MAX)
    assert isinstance(step, Answer)
    assert step.code is ErrorCode.MALFORMED_JSON


def test_an_auth_without_a_token_is_waited_past() -> None:
    assert Session.first_frame(b'{"type":"auth"}', MAX) is None


def test_an_oversized_first_frame_closes_1009() -> None:
    big = '{"type":"auth","token":"' + "é" * 600 + '"}'  # 1,200+ bytes, 600+ characters
    assert Session.first_frame(big, MAX) == Close(CloseCode.MESSAGE_TOO_BIG)


def test_the_auth_deadline_counts_from_the_session_start() -> None:
    s = session(now=100.0, auth_deadline=5.0)
    assert s.auth_remaining(101.5) == pytest.approx(3.5)
    assert s.auth_remaining(105.0) <= 0


def test_nothing_is_due_before_the_session_is_open() -> None:
    s = session()
    s.arm_expiry(expires_at=1_000, wall_now=999.0, now=100.0, warning=60)
    assert s.next_deadline() is None
    assert s.on_deadline(10_000.0) == []


# ---------------------------------------------------------------------------- inbound
def test_every_frame_is_liveness_and_oversized_ones_close() -> None:
    s = opened(now=100.0)
    assert s.frame_in(MAX, 130.0, MAX) is None
    assert s.last_seen == 130.0
    assert s.frame_in(MAX + 1, 131.0, MAX) == Close(CloseCode.MESSAGE_TOO_BIG)
    assert not s.heartbeat_expired(140.0, timeout=10.0)
    assert s.heartbeat_expired(141.5, timeout=10.0)
    s.heard(141.5)  # a pong
    assert not s.heartbeat_expired(150.0, timeout=10.0)


def test_the_budget_allows_a_burst_then_refuses_once_then_closes() -> None:
    s = opened(now=0.0)
    verdicts = [s.charge(POLICY, 0.0, ping=False) for _ in range(5)]
    assert verdicts == [Verdict.ALLOW] * 5
    assert s.charge(POLICY, 0.0, ping=False) is Verdict.REFUSE_FIRST
    assert s.charge(POLICY, 0.0, ping=False) is Verdict.REFUSE
    rest = [s.charge(POLICY, 0.0, ping=False) for _ in range(4)]
    assert rest[-1] is Verdict.CLOSE
    # pings cost a quarter: a fresh session takes 20 of them in its burst of 5
    p = opened(now=0.0)
    assert all(p.charge(POLICY, 0.0, ping=True) is Verdict.ALLOW for _ in range(20))
    assert p.charge(POLICY, 0.0, ping=True) is Verdict.REFUSE_FIRST


def test_the_reader_yields_every_few_messages() -> None:
    s = opened()
    assert [s.should_yield(POLICY) for _ in range(6)] == [False, False, True] * 2


# ---------------------------------------------------------------------------- token expiry
def test_the_token_is_warned_about_then_closed_4001() -> None:
    s = opened(now=100.0)
    # expires 300 s from now (wall 1,000 + 300), warned 60 s before
    s.arm_expiry(expires_at=1_300, wall_now=1_000.0, now=100.0, warning=60)
    assert s.next_deadline() == pytest.approx(340.0)
    assert s.on_deadline(339.9) == []
    assert s.on_deadline(340.0) == [WarnExpiry(1_300, 60)]
    assert s.next_deadline() == pytest.approx(400.0)
    assert s.on_deadline(400.0) == [Close(CloseCode.UNAUTHORIZED, TOKEN_EXPIRED_REASON)]
    assert s.next_deadline() is None


def test_a_token_already_inside_the_warning_is_warned_and_closed_on_time() -> None:
    s = opened(now=0.0)
    s.arm_expiry(expires_at=1_010, wall_now=1_000.0, now=0.0, warning=60)
    assert s.on_deadline(0.0) == [WarnExpiry(1_010, 10)]
    assert s.on_deadline(10.0) == [Close(CloseCode.UNAUTHORIZED, TOKEN_EXPIRED_REASON)]


def test_a_refresh_rearms_the_expiry_and_no_expiry_means_no_deadline() -> None:
    s = opened(now=0.0)
    s.arm_expiry(expires_at=1_100, wall_now=1_000.0, now=0.0, warning=60)
    s.arm_expiry(expires_at=2_000, wall_now=1_050.0, now=50.0, warning=60)  # refreshed
    assert s.next_deadline() == pytest.approx(50.0 + 950 - 60)
    assert s.on_deadline(100.0) == []
    s.arm_expiry(expires_at=0, wall_now=1_050.0, now=50.0, warning=60)
    assert s.next_deadline() is None


# ---------------------------------------------------------------------------- acks
def test_unacked_messages_are_resent_then_given_up() -> None:
    s = opened(now=0.0, ack_timeout=2.0, ack_retries=2)
    assert s.await_ack("a", "msg-a", 0.0)
    assert not s.await_ack("a", "msg-a", 0.5)  # already waited for
    assert s.await_ack("b", "msg-b", 1.0)
    assert s.next_deadline() == 2.0
    assert s.on_deadline(2.0) == [Resend("msg-a")]
    assert s.next_deadline() == 3.0  # b's first deadline, then a's second (4.0)
    assert s.acked("b")
    assert not s.acked("b")
    assert s.on_deadline(4.0) == [Resend("msg-a")]
    assert s.on_deadline(6.0) == [GaveUp(1)]
    assert s.next_deadline() is None


def test_the_next_deadline_is_the_earliest_of_expiry_and_resends() -> None:
    s = opened(now=0.0, ack_timeout=30.0)
    s.arm_expiry(expires_at=1_100, wall_now=1_000.0, now=0.0, warning=90)  # warn at 10
    s.await_ack("x", "m", 0.0)  # resend at 30
    assert s.next_deadline() == 10.0
    assert s.on_deadline(30.0) == [WarnExpiry(1_100, 70), Resend("m")]


def test_a_closed_session_forgets_its_deadlines() -> None:
    s = opened(now=0.0)
    s.await_ack("x", "m", 0.0)
    s.closed()
    assert s.state is State.CLOSED
    assert s.next_deadline() is None
    assert not s.acked("x")
    with pytest.raises(InvalidTransition):
        s.opened()


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.floats(0, 5), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_ack_tracker_deadlines_stay_in_order(events: list[tuple[str, float, bool]]) -> None:
    """Whatever is tracked, acked and resent, the next deadline is the earliest one and
    nothing due is left behind."""
    tracker: AckTracker[str] = AckTracker(timeout=2.0, retries=3)
    now = 0.0
    for ack_id, step, ack in events:
        now += step
        if ack:
            tracker.acked(ack_id)
        else:
            tracker.track(ack_id, ack_id, now)
        tracker.due(now)
        deadlines = [e.deadline for e in tracker._entries.values()]
        assert deadlines == sorted(deadlines)
        assert all(d > now for d in deadlines)
        assert tracker.next_deadline() == (deadlines[0] if deadlines else None)


# ---------------------------------------------------------------------------- framing
def event(frame: str = '{"type":"x"}', offset: int = 1) -> Outgoing:
    return Outgoing(frame, "normal", room="r", offset=offset)


def test_the_wire_frame_is_built_once_for_every_recipient() -> None:
    out = event()
    first = wire_of(out, None)
    assert first == text_frame(b'{"type":"x"}')
    assert wire_of(out, None) is first


def test_room_events_above_the_threshold_are_compressed_replies_never() -> None:
    body = json.dumps({"type": "x", "data": "y" * 500})
    out = event(body)
    frame = frame_of(out, threshold=100)
    packed = json.loads(frame)
    assert packed["type"] == "compressed"
    assert zlib.decompress(base64.b64decode(packed["data"])).decode() == body
    assert frame_of(out, threshold=100) is frame  # compressed once
    assert wire_of(out, threshold=100) == text_frame(frame.encode())
    assert frame_of(out, threshold=None) == body  # that client did not ask
    assert frame_of(event(body, offset=0), threshold=100) == body  # a reply
    assert frame_of(event('{"type":"x"}'), threshold=100) == '{"type":"x"}'  # below


def test_a_batch_frame_keeps_the_order() -> None:
    frame = batch_frame([event('{"n":1}'), event('{"n":2}')])
    assert json.loads(frame) == {"type": "batch", "messages": [{"n": 1}, {"n": 2}]}
