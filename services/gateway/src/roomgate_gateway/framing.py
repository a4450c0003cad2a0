"""What goes on the wire for an outgoing message, without I/O: the text frame a client
gets (``compressed`` above the threshold for clients that asked for deflate), the
``batch`` frame of several, and the WebSocket frame bytes, each built once per message and
shared by every recipient (cached on the ``Outgoing``)."""

from __future__ import annotations

import base64
import struct
import zlib

from roomgate_gateway.outbound import Outgoing

_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455 §5.2) carrying ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return _LEN16.pack(0x81, 126, size) + payload
    return _LEN64.pack(0x81, 127, size) + payload


def frame_of(item: Outgoing, threshold: int | None) -> str:
    """The message as the client gets it. ``threshold``: the compression threshold of a
    client that asked for deflate (None: it did not). Room events (they carry an offset)
    are compressed; the gateway's own replies never."""
    if threshold is not None and item.offset and len(item.frame) >= threshold:
        if item.compressed is None:
            packed = base64.b64encode(zlib.compress(item.frame.encode(), 6)).decode()
            item.compressed = '{"type":"compressed","data":"' + packed + '"}'
        return item.compressed
    return item.frame


def wire_of(item: Outgoing, threshold: int | None) -> bytes:
    """The message's whole WebSocket frame, built once and shared by its recipients."""
    if threshold is not None and item.offset:
        frame = frame_of(item, threshold)
        if frame is item.compressed:
            if item.wire_compressed is None:
                item.wire_compressed = text_frame(frame.encode())
            return item.wire_compressed
    if item.wire is None:
        item.wire = text_frame(item.frame.encode())
    return item.wire


def batch_frame(items: list[Outgoing]) -> str:
    """Several messages in one ``batch`` frame, in order."""
    return '{"type":"batch","messages":[' + ",".join(i.frame for i in items) + "]}"
