"""Property-based fuzzing (hypothesis) of what outsiders feed the system: the client envelope
parser, the `compressed` and `batch` paths, the room grammar and the token verifier. The
example budget is the profile's (tests/conftest.py: `ci` 200 per test by default,
HYPOTHESIS_PROFILE=long for 20,000)."""

from __future__ import annotations

import base64
import contextlib
import json
import zlib
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import assume, given
from hypothesis import strategies as st
from roomgate_auth.errors import AuthError
from roomgate_auth.tokens import KeyRing, TokenPolicy, hs256_key, hs256_signing_key
from roomgate_common.identity import Principal, PrincipalKind
from roomgate_common.jsondepth import MAX_JSON_DEPTH
from roomgate_common.rooms import GLOBAL_KINDS, ID_KINDS, Room, RoomKind, parse_room, room_name
from roomgate_gateway import protocol as p
from roomgate_gateway.codes import ErrorCode

CAP = 4096
SECRET = "fuzz-secret-" + "f" * 40

# --- the envelope parser ---------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=12,
)
# The client's control messages (docs/protocol.md), the event types, and unknown ones.
CONTROL = {"auth", "ping", "subscribe", "unsubscribe", "refresh", "ack", "batch", "compressed"}
types = st.sampled_from(sorted(CONTROL | p.EVENT_TYPES | {"teleport", "", "BATCH"}))
envelopes = st.fixed_dictionaries(
    {"type": types},
    optional={
        "id": json_values,
        "room": st.text(max_size=140) | json_values,
        "data": json_values,
        "token": json_values,
        "ackId": json_values,
        "messages": st.lists(json_values, max_size=5),
        "metadata": json_values,
        "requiresAck": json_values,
        "timestamp": json_values,
    },
)


def _refusal(call: Callable[[], object]) -> p.ProtocolError | None:
    """The ProtocolError ``call`` raised (None when it returned); any other exception fails."""
    try:
        call()
    except p.ProtocolError as exc:
        return exc
    return None


def _parse(raw: bytes | str, **kw: Any) -> p.ClientMessage | None:
    """parse_message, asserting that the only failure is a documented ProtocolError."""
    error = _refusal(lambda: p.parse_message(raw, **kw))
    if error is not None:
        assert error.code in set(ErrorCode)
        assert len(error.message) <= 200
        return None
    return p.parse_message(raw, **kw)


@given(st.binary(max_size=2048) | st.text(max_size=2048))
def test_parser_survives_any_frame(raw: bytes | str) -> None:
    """Any bytes or text: a typed message or a documented error code, never another exception."""
    _parse(raw)


@given(envelopes)
def test_parser_survives_envelope_shaped_json(envelope: dict[str, Any]) -> None:
    """Envelope-shaped JSON with wrong-typed fields: typed message or documented error."""
    message = _parse(json.dumps(envelope))
    if message is not None:
        kind = envelope["type"]
        tag = type(message).__struct_config__.tag
        assert kind == (message.type if isinstance(message, p.Event) else tag)


@given(st.integers(min_value=MAX_JSON_DEPTH + 1, max_value=20_000), st.sampled_from("[{"))
def test_deep_nesting_is_a_documented_error(depth: int, bracket: str) -> None:
    """Nesting past the bound is json_too_deep whatever the depth (never RecursionError)."""
    close = "]" if bracket == "[" else "}"
    inner = bracket * depth if bracket == "[" else '{"a":' * depth + "1" + close * depth
    raw = '{"type": "ping", "data": ' + (inner + close * depth if bracket == "[" else inner) + "}"
    error = _refusal(lambda: p.parse_message(raw))
    assert error is not None and error.code is ErrorCode.JSON_TOO_DEEP


room_names = st.builds(
    lambda kind, n: kind.value if kind in GLOBAL_KINDS else f"{kind.value}-{n}",
    st.sampled_from([k for k in RoomKind if k in GLOBAL_KINDS or k in ID_KINDS]),
    st.integers(min_value=1, max_value=2**63 - 1),
)
ids = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=128)


finite = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


@given(room_names, ids, st.dictionaries(st.text(max_size=8), finite, max_size=4))
def test_valid_messages_round_trip(room: str, msg_id: str, data: dict[str, Any]) -> None:
    """subscribe / event / ping / ack built from valid parts parse back to the same fields."""
    sub = p.parse_message(json.dumps({"type": "subscribe", "id": msg_id, "data": {"room": room}}))
    assert isinstance(sub, p.Subscribe) and (sub.id, sub.data.room) == (msg_id, room)
    event = p.parse_message(
        json.dumps({"type": "agent_status", "room": room, "data": data, "id": msg_id})
    )
    assert isinstance(event, p.Event)
    assert (event.room, event.id) == (room, msg_id)
    assert msgspec.json.decode(msgspec.json.encode(event.data)) == json.loads(json.dumps(data))
    ack = p.parse_message(json.dumps({"type": "ack", "ackId": msg_id}))
    assert isinstance(ack, p.Ack) and ack.ackId == msg_id


# --- batch and compressed ----------------------------------------------------------------------


@given(st.lists(envelopes, max_size=4))
def test_batch_items_parse_one_by_one(items: list[dict[str, Any]]) -> None:
    """A batch keeps every item as raw JSON; each item then parses (nested) or fails alone,
    and batch/compressed inside a batch is always nesting_not_allowed."""
    batch = _parse(json.dumps({"type": "batch", "messages": items}))
    assert isinstance(batch, p.Batch)
    assert len(batch.messages) == len(items)
    for item, raw in zip(items, batch.messages, strict=True):
        error = _refusal(lambda raw=raw: p.parse_message(bytes(raw), nested=True))
        if item["type"] in ("batch", "compressed"):
            assert error is not None
            assert error.code in (ErrorCode.NESTING_NOT_ALLOWED, ErrorCode.JSON_TOO_DEEP)


@given(st.binary(max_size=CAP), st.booleans())
def test_inflate_round_trips_below_the_cap(payload: bytes, raw_deflate: bool) -> None:
    """zlib or raw deflate of up to CAP bytes inflates back to exactly those bytes."""
    if raw_deflate:
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        packed = packer.compress(payload) + packer.flush()
    else:
        packed = zlib.compress(payload)
    assert p.inflate(base64.b64encode(packed).decode(), max_inflated=CAP) == payload


@given(st.integers(min_value=CAP + 1, max_value=CAP * 64))
def test_inflate_stops_at_the_cap(size: int) -> None:
    """Anything inflating past the cap is inflated_too_large (a bomb costs at most the cap)."""
    packed = base64.b64encode(zlib.compress(b"a" * size)).decode()
    error = _refusal(lambda: p.inflate(packed, max_inflated=CAP))
    assert error is not None and error.code is ErrorCode.INFLATED_TOO_LARGE


@given(st.text(max_size=512) | st.binary(max_size=512).map(lambda b: base64.b64encode(b).decode()))
def test_inflate_survives_any_data(data: str) -> None:
    """Any `compressed.data`: bytes within the cap or a documented compression error."""
    error = _refusal(lambda: p.inflate(data, max_inflated=CAP))
    if error is not None:
        assert error.code in (ErrorCode.COMPRESSION_ERROR, ErrorCode.INFLATED_TOO_LARGE)
    else:
        assert len(p.inflate(data, max_inflated=CAP)) <= CAP


# --- the room grammar --------------------------------------------------------------------------


@given(room_names)
def test_valid_rooms_round_trip(name: str) -> None:
    """Every valid room parses, and its canonical name is the input."""
    room = parse_room(name)
    assert room is not None
    assert room.name == name == room_name(room.kind, room.arg)


HOSTILE_JUNK = [" ", "\x00", "\n", "-", "+", "\u00e9", "\uff21", "/", "*", "..", "%00"]


@given(room_names, st.sampled_from(HOSTILE_JUNK))
def test_hostile_variants_are_refused(name: str, junk: str) -> None:
    """A valid name with junk before or after it, upper-cased, or with a leading zero in its
    id is refused."""
    assert parse_room(junk + name) is None
    assert parse_room(name + junk) is None
    assert parse_room(name.upper()) is None
    if "-" in name:
        assert parse_room(name.replace("-", "-0", 1)) is None


@given(st.text(max_size=200))
def test_any_text_parses_to_a_canonical_room_or_none(name: str) -> None:
    """parse_room never raises; what it accepts is exactly its own canonical name."""
    room = parse_room(name)
    if room is not None:
        assert isinstance(room, Room) and room.name == name and len(name) <= 128


# --- the token verifier ------------------------------------------------------------------------

POLICY = TokenPolicy(
    issuer="fuzz",
    audience="roomgate",
    keys=KeyRing.build([], hs256_key(SECRET)),
    signing=hs256_signing_key(SECRET),
)
_perms = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True), max_size=5).map(tuple)
principals = st.builds(
    Principal,
    kind=st.sampled_from([PrincipalKind.USER, PrincipalKind.AGENT]),
    id=st.integers(min_value=1, max_value=2**53).map(str),
    permissions=_perms,
) | st.builds(
    Principal,
    kind=st.just(PrincipalKind.SERVICE),
    id=st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True),
    permissions=_perms,
)


@given(st.text(max_size=10_000))
def test_verifier_survives_any_string(token: str) -> None:
    """Any string is a principal or an AuthError with a documented reason, never a crash."""
    with contextlib.suppress(AuthError):
        POLICY.verify(token)


@given(principals)
def test_minted_tokens_round_trip(principal: Principal) -> None:
    """A minted token verifies to the same identity and permissions."""
    token, issued = POLICY.mint(principal, 60)
    got = POLICY.verify(token)
    assert (got.kind, got.id, got.permissions, got.session_id) == (
        principal.kind,
        principal.id,
        principal.permissions,
        issued.session_id,
    )


@given(principals, st.data())
def test_tampered_tokens_are_refused(principal: Principal, data: st.DataObject) -> None:
    """Changing any one character of a valid token makes it refused (or, for base64 padding
    bits that decode the same, verify to the very same principal)."""
    where = data.draw(st.floats(min_value=0, max_value=1, exclude_max=True))
    token, _ = POLICY.mint(principal, 60)
    i = int(where * len(token))
    c = data.draw(st.sampled_from("AZaz09-_.=+/ \x00"))
    assume(c != token[i])
    forged = token[:i] + c + token[i + 1 :]
    try:
        got = POLICY.verify(forged)
    except AuthError:
        return
    assert (got.kind, got.id, got.permissions) == (
        principal.kind,
        principal.id,
        principal.permissions,
    )
