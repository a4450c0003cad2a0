"""The gateway's WebSocket protocol (``wsprotocol``): frames built once and written directly
are valid WebSocket frames of every length class, connections use that path, and nothing
of the handshake (the token least) stays with a connection."""

from __future__ import annotations

import json

import pytest
from roomgate_gateway.wsprotocol import GatewayWebSocketProtocol, text_frame
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tests.gateway.conftest import Stack, recv, send


def parse(wire: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        assert reader.at_eof()  # the frame is exactly the bytes written: nothing left over
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frame_round_trips_through_a_websocket_parser(size: int) -> None:
    """7-bit, 16-bit and 64-bit payload lengths (RFC 6455 §5.2), unmasked, final, text."""
    payload = ("é" * size).encode()[:size]
    frame = parse(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data == payload


@pytest.mark.gateway_settings(max_message_bytes=1_000_000)
async def test_connections_write_frames_directly_and_large_ones_arrive_whole(
    stack: Stack,
) -> None:
    """Every size class of frame reaches a real client intact over the direct path."""
    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    await recv(ws)
    (conn,) = stack.gateway.connections
    assert isinstance(conn._direct, GatewayWebSocketProtocol)
    for size in (10, 1_000, 70_000, 300_000):
        await stack.publish("system", "metrics_update", {"blob": "x" * size})
        got = await recv(ws)
        assert got["type"] == "metrics_update"
        assert got["data"]["blob"] == "x" * size


async def test_nothing_of_the_handshake_stays_with_the_connection(stack: Stack) -> None:
    """The request (its path carries `?token=`), its headers and the ASGI scope's query
    string are dropped once the upgrade is answered; the connection keeps no token."""
    token = stack.token("7")
    ws = await stack.connect(token)
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"
    (conn,) = stack.gateway.connections
    proto = conn._direct
    assert proto.request is None and proto.response is None
    assert proto.scope["query_string"] == b""
    assert proto.scope["headers"] == []
    assert conn._token is None
    parser_frame = proto.conn.parser.gi_frame  # websockets keeps the request in its parser
    request = parser_frame.f_locals["request"]
    assert request.path == ""
    assert not list(request.headers.raw_items())
    assert token not in json.dumps(proto.scope, default=repr)
