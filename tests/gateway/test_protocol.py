"""The pure protocol core: parsing, inflation caps, the outbound queue, the state machine,
the circuit breaker and the live limits — values only, no I/O."""

from __future__ import annotations

import base64
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from roomgate_gateway import protocol as p
from roomgate_gateway.breaker import BreakerState, CircuitBreaker
from roomgate_gateway.codes import ErrorCode
from roomgate_gateway.limits import Limits, apply_policy
from roomgate_gateway.outbound import OutboundQueue, Outgoing, SlowConsumer
from roomgate_gateway.settings import GatewaySettings
from roomgate_gateway.state import ConnectionStateMachine, InvalidTransition, State


def code_of(raw: bytes | str, **kw: bool) -> ErrorCode:
    with pytest.raises(p.ProtocolError) as info:
        p.parse_message(raw, **kw)
    return info.value.code


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", ErrorCode.MALFORMED_JSON),
        (b"not json", ErrorCode.MALFORMED_JSON),
        (b"\xff\xfe", ErrorCode.MALFORMED_JSON),
        (b"[]", ErrorCode.INVALID_MESSAGE),
        (b"42", ErrorCode.INVALID_MESSAGE),
        (b"{}", ErrorCode.INVALID_MESSAGE),
        (b'{"type": 5}', ErrorCode.INVALID_MESSAGE),
        (b'{"type": "teleport"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"type": "welcome"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"type": "agent_connected", "room": "agents"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"type": "subscribe"}', ErrorCode.INVALID_MESSAGE),
        (b'{"type": "subscribe", "data": {"room": 5}}', ErrorCode.INVALID_MESSAGE),
        (b'{"type": "subscribe", "data": {"room": ""}}', ErrorCode.INVALID_MESSAGE),
        (
            b'{"type": "subscribe", "data": {"room": "' + b"a" * 129 + b'"}}',
            ErrorCode.INVALID_MESSAGE,
        ),
        (
            b'{"type": "subscribe", "data": {"room": "x", "since": {"offset": -1, "epoch": "e"}}}',
            ErrorCode.INVALID_MESSAGE,
        ),
        (b'{"type": "agent_status", "data": {}}', ErrorCode.INVALID_MESSAGE),
        (b'{"type": "agent_status", "room": "agents", "data": []}', ErrorCode.INVALID_MESSAGE),
        (b'{"type": "ping", "metadata": {"priority": "urgent"}}', ErrorCode.INVALID_MESSAGE),
        (b'{"type": "ping", "metadata": {"ttl": -1}}', ErrorCode.INVALID_MESSAGE),
        (b'{"type": "ack"}', ErrorCode.INVALID_MESSAGE),
        (b'{"type": "batch", "messages": {}}', ErrorCode.INVALID_MESSAGE),
        (b'{"type": "auth", "token": ""}', ErrorCode.INVALID_MESSAGE),
    ],
)
def test_bad_messages_get_their_code(raw: bytes, code: ErrorCode) -> None:
    """Every malformed input maps to its documented error code."""
    assert code_of(raw) == code


def test_ref_id_is_kept_for_invalid_messages() -> None:
    """An invalid message's own id comes back as ref_id so the client can match the error."""
    with pytest.raises(p.ProtocolError) as info:
        p.parse_message(b'{"type": "subscribe", "id": "m-1"}')
    assert info.value.ref_id == "m-1"


def test_nested_batch_and_compressed_are_refused_inside_a_batch() -> None:
    """A batch cannot carry a batch or a compressed frame."""
    assert (
        code_of(b'{"type": "batch", "messages": []}', nested=True) == ErrorCode.NESTING_NOT_ALLOWED
    )
    assert (
        code_of(b'{"type": "compressed", "data": "eA=="}', nested=True)
        == ErrorCode.NESTING_NOT_ALLOWED
    )


def test_messages_parse_to_their_types() -> None:
    """Each control type and a client event parse to their typed forms."""
    assert isinstance(p.parse_message('{"type":"ping","timestamp":1}'), p.Ping)
    assert p.parse_message('{"type":"auth","token":"t"}').credential() == "t"  # type: ignore[union-attr]
    assert p.parse_message('{"type":"auth","data":{"token":"u"}}').credential() == "u"  # type: ignore[union-attr]
    sub = p.parse_message(
        '{"type":"subscribe","data":{"room":"agents","since":{"offset":3,"epoch":"e"}}}'
    )
    assert isinstance(sub, p.Subscribe)
    assert sub.data.since == p.Since(3, "e")
    ev = p.parse_message(
        '{"type":"agent_status","room":"agents","data":{"a":1},"requiresAck":true,"id":"x"}'
    )
    assert isinstance(ev, p.Event)
    assert ev.requiresAck
    assert ev.type == "agent_status"


def _deflate(payload: bytes, raw: bool = False) -> str:
    if raw:
        c = zlib.compressobj(wbits=-15)
        packed = c.compress(payload) + c.flush()
    else:
        packed = zlib.compress(payload)
    return base64.b64encode(packed).decode()


def test_inflate_accepts_zlib_and_raw_deflate() -> None:
    """Both zlib (pako.deflate) and raw deflate inflate to the original bytes."""
    body = json.dumps({"type": "ping"}).encode()
    assert p.inflate(_deflate(body), max_inflated=1000) == body
    assert p.inflate(_deflate(body, raw=True), max_inflated=1000) == body


def test_compression_bomb_is_cut_at_the_cap() -> None:
    """10 MB of zeros compressed to ~10 KB is refused at the cap without inflating it all."""
    bomb = _deflate(b"\0" * 10_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(p.ProtocolError) as info:
        p.inflate(bomb, max_inflated=65536)
    assert info.value.code == ErrorCode.INFLATED_TOO_LARGE


@pytest.mark.parametrize(
    "data", ["%%%", base64.b64encode(b"not deflate").decode(), _deflate(b"x" * 100)[:-8]]
)
def test_bad_compressed_data(data: str) -> None:
    """Garbage, non-deflate and truncated streams are compression errors."""
    with pytest.raises(p.ProtocolError) as info:
        p.inflate(data, max_inflated=1000)
    assert info.value.code == ErrorCode.COMPRESSION_ERROR


def out(tag: str, priority: str = "normal", expires_at: float | None = None) -> Outgoing:
    return Outgoing(tag, priority, expires_at)  # type: ignore[arg-type]


def test_queue_drops_low_then_normal_then_refuses_high() -> None:
    """Overflow evicts the oldest low, then the oldest normal; high into all-high is a slow consumer."""
    q = OutboundQueue(3)
    assert q.push(out("l1", "low")) is None
    assert q.push(out("n1")) is None
    assert q.push(out("h1", "high")) is None
    assert q.push(out("h2", "high")).frame == "l1"  # type: ignore[union-attr]
    assert q.push(out("l2", "low")).frame == "l2"  # type: ignore[union-attr]
    assert q.push(out("h3", "high")).frame == "n1"  # type: ignore[union-attr]
    with pytest.raises(SlowConsumer):
        q.push(out("h4", "high"))
    items, expired = q.pop_many(10, now=0)
    assert [i.frame for i in items] == ["h1", "h2", "h3"]
    assert expired == 0


def test_queue_orders_by_priority_and_skips_expired() -> None:
    """pop_many gives high before normal before low, FIFO within a lane, and drops expired ones."""
    q = OutboundQueue(10)
    for item in [
        out("n1"),
        out("l1", "low"),
        out("h1", "high"),
        out("n2", expires_at=5.0),
        out("n3"),
    ]:
        q.push(item)
    items, expired = q.pop_many(10, now=6.0)
    assert [i.frame for i in items] == ["h1", "n1", "n3", "l1"]
    assert expired == 1
    assert len(q) == 0


@given(st.lists(st.sampled_from(["high", "normal", "low"]), max_size=60), st.integers(1, 10))
def test_queue_never_exceeds_its_bound(priorities: list[str], size: int) -> None:
    """Whatever arrives, the queue holds at most maxsize and never loses high while lower exist."""
    q = OutboundQueue(size)
    for i, prio in enumerate(priorities):
        try:
            q.push(out(str(i), prio))
        except SlowConsumer:
            assert all(item.priority == "high" for item in q.drain())
            return
        assert len(q) <= size


def test_state_machine_guards_transitions() -> None:
    """CONNECTING -> OPEN -> CLOSING -> CLOSED; nothing goes back."""
    sm = ConnectionStateMachine()
    sm.to(State.OPEN)
    assert sm.is_open
    with pytest.raises(InvalidTransition):
        sm.to(State.CONNECTING)
    sm.to(State.CLOSING)
    with pytest.raises(InvalidTransition):
        sm.to(State.OPEN)
    sm.to(State.CLOSED)


def test_breaker_opens_fails_fast_and_half_opens() -> None:
    """After N failures calls fail fast until the recovery timeout, then one trial goes out."""
    now = [0.0]
    b = CircuitBreaker(failure_threshold=3, recovery_timeout=10, clock=lambda: now[0])
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    now[0] = 10.5
    assert b.allow()
    assert not b.allow()  # only one trial in flight
    b.failure()
    assert b.state is BreakerState.OPEN
    now[0] = 21
    assert b.allow()
    b.success()
    assert b.state is BreakerState.CLOSED
    assert b.allow()


def test_policy_applies_valid_fields_and_rejects_the_rest() -> None:
    """A live policy changes the limits it names; bad fields are rejected one by one."""
    base = Limits.from_settings(GatewaySettings.from_env())
    limits, rejected = apply_policy(
        base,
        {
            "maxConnectionsPerIp": 3,
            "outboundQueueSize": "big",
            "bogus": 1,
            "maxMessageBytes": 10,
            "authDeadlineSeconds": 2.5,
        },
        generation=7,
    )
    assert limits.max_connections_per_ip == 3
    assert limits.auth_deadline == 2.5
    assert limits.outbound_queue_size == base.outbound_queue_size
    assert limits.max_message_bytes == base.max_message_bytes
    assert limits.generation == 7
    assert sorted(rejected) == ["bogus", "maxMessageBytes", "outboundQueueSize"]


def test_policy_keeps_heartbeat_timeout_above_interval() -> None:
    """A timeout not above the interval is rejected (it would close every healthy client)."""
    base = Limits.from_settings(GatewaySettings.from_env())
    limits, rejected = apply_policy(
        base, {"heartbeatIntervalSeconds": 60, "heartbeatTimeoutSeconds": 30}, 1
    )
    assert (limits.heartbeat_interval, limits.heartbeat_timeout) == (
        base.heartbeat_interval,
        base.heartbeat_timeout,
    )
    assert "heartbeatTimeoutSeconds" in rejected
