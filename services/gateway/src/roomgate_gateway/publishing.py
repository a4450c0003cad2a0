"""The backend publishing API, shared by ``POST /api/v1/publish`` and the gRPC
``PublishService``: authenticate the service token (kept once verified,
``roomgate_common.credentials``), authorise the publish with roomauthz (decisions kept
AUTHZ_CACHE_TTL), hand the envelope to the bus. Errors carry an HTTP status and a
machine-readable code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec
from opentelemetry.trace import SpanKind
from roomgate_common.envelope import Envelope, make_envelope
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.jsondepth import too_deep
from roomgate_common.publisher import Published
from roomgate_common.telemetry import inject_trace

from roomgate_gateway.clients import KIND_NAMES, AuthRejected, PeerUnavailable, Principal
from roomgate_gateway.errors import GatewayError
from roomgate_gateway.gateway import Gateway
from roomgate_gateway.protocol import EVENT_TYPES, RoomName, Str128


class PublishMetadata(msgspec.Struct, omit_defaults=True):
    correlation_id: Str128 | None = None
    priority: Literal["high", "normal", "low"] = "normal"
    ttl: Annotated[int, msgspec.Meta(ge=0, le=7 * 86400)] | None = None


class PublishBody(msgspec.Struct):
    room: RoomName
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: PublishMetadata = msgspec.field(default_factory=PublishMetadata)
    requiresAck: bool = False


class PublishBatch(msgspec.Struct):
    """``POST /api/v1/publish/batch``: up to ``PUBLISH_BATCH_MAX`` events in one request."""

    events: list[PublishBody]


publish_decoder = msgspec.json.Decoder(PublishBody)
batch_decoder = msgspec.json.Decoder(PublishBatch)


class PublishError(GatewayError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def counted(self, gw: Gateway) -> PublishError:
        """Count the refused request (``api_publishes_total{outcome=<code>}``)."""
        gw.metrics.api_publishes.labels(self.code).inc()
        return self


async def authenticate_publisher(gw: Gateway, token: str) -> Principal:
    """The service principal behind ``token``, with the publish permission (any room yet)."""
    if not token:
        raise PublishError(401, "unauthorized", "missing bearer token")
    principal = gw.publish_credentials.get(token)  # verified earlier, still good
    if principal is None:
        try:
            principal = await gw.authenticate(token)
        except AuthRejected as exc:
            raise PublishError(401, "unauthorized", exc.reason) from None
        except PeerUnavailable:
            raise PublishError(503, "unavailable", "auth unavailable") from None
        gw.publish_credentials.put(token, principal)
    if (
        KIND_NAMES.get(principal.kind) != "service"
        or gw.settings.publish_permission not in principal.permissions
    ):
        raise PublishError(
            403, "permission_denied", "a service token with the publish permission is required"
        )
    return principal


async def authorize_room(gw: Gateway, principal: Principal, room: str, type_: str) -> None:
    """roomauthz allows ``principal`` to publish ``type_`` into ``room``, or PublishError."""
    try:  # decisions are kept AUTHZ_CACHE_TTL, as the WebSocket's (an ACL change drops them)
        decision = await gw.authorize(principal, room, "publish", type_)
    except PeerUnavailable:
        raise PublishError(503, "unavailable", "roomauthz unavailable") from None
    if not decision.allowed:
        raise PublishError(403, "permission_denied", decision.reason)


async def publish_one(
    gw: Gateway, principal: Principal, body: PublishBody, sender: str | None = None
) -> dict[str, Any]:
    """The one publish handler behind both publish APIs (``POST /api/v1/publish`` and the
    gRPC ``Publish``), once the body is decoded and its type checked: roomauthz allows
    ``principal`` to publish it into its room, then it is published."""
    await authorize_room(gw, principal, body.room, body.type)
    return await publish_event(gw, principal, body, sender)


async def publish_request(gw: Gateway, principal: Principal, raw: bytes) -> dict[str, Any]:
    """``POST /api/v1/publish``: one event in a JSON body."""
    try:
        body = publish_decoder.decode(raw)
    except msgspec.MsgspecError as exc:
        raise PublishError(400, "invalid_message", str(exc)[:200]) from None
    check_type(body.type)
    return await publish_one(gw, principal, body)


async def publish_batch_request(gw: Gateway, principal: Principal, raw: bytes) -> dict[str, Any]:
    """``POST /api/v1/publish/batch``: every event is checked and authorised before any is
    published; a refusal names the first refused event (``events[i]``) and nothing is
    published."""
    try:
        events = batch_decoder.decode(raw).events
    except msgspec.MsgspecError as exc:
        raise PublishError(400, "invalid_message", str(exc)[:200]) from None
    most = gw.settings.publish_batch_max
    if not 1 <= len(events) <= most:
        raise PublishError(400, "batch_too_large", f"1 to {most} events per batch")
    for index, body in enumerate(events):
        try:
            check_type(body.type)
            await authorize_room(gw, principal, body.room, body.type)
        except PublishError as exc:
            raise PublishError(exc.status, exc.code, f"events[{index}]: {exc.message}") from None
    return {"results": await publish_events(gw, principal, events)}


def build_envelope(principal: Principal, body: PublishBody, sender: str | None = None) -> Envelope:
    """The envelope of one publish (trace context of the current span in its metadata)."""
    metadata: dict[str, Any] = {"priority": body.metadata.priority}
    if body.metadata.ttl:
        metadata["ttl"] = body.metadata.ttl
    if body.metadata.correlation_id:
        metadata["correlation_id"] = body.metadata.correlation_id
    if body.requiresAck:
        metadata["requiresAck"] = True
    inject_trace(metadata)
    return make_envelope(
        body.type, sender=sender or principal.id, room=body.room, data=body.data, metadata=metadata
    )


async def publish_event(
    gw: Gateway, principal: Principal, body: PublishBody, sender: str | None = None
) -> dict[str, Any]:
    # The span every gateway's `deliver` span is a child of (its context rides in metadata).
    with gw.tracer.start_as_current_span(
        "publish", kind=SpanKind.PRODUCER, attributes={"roomgate.room": body.room}
    ):
        envelope = build_envelope(principal, body, sender)
        with _bus_errors():
            published = await gw.publish(envelope)
    gw.metrics.api_publishes.labels("published").inc()
    return _result(published)


async def publish_events(
    gw: Gateway, principal: Principal, bodies: list[PublishBody]
) -> list[dict[str, Any]]:
    """Publish ``bodies`` (already authorised) in one Redis round trip, in order."""
    with gw.tracer.start_as_current_span(
        "publish", kind=SpanKind.PRODUCER, attributes={"roomgate.events": len(bodies)}
    ):
        envelopes = [build_envelope(principal, body) for body in bodies]
        with _bus_errors(partial=True):
            published = await gw.publish_many(envelopes)
    gw.metrics.api_publishes.labels("published").inc(len(published))
    return [_result(p) for p in published]


def _result(published: Published) -> dict[str, Any]:
    return {
        "id": published.id,
        "room": published.room,
        "offset": published.offset,
        "epoch": published.epoch,
    }


@contextlib.contextmanager
def _bus_errors(partial: bool = False) -> Iterator[None]:
    lost = "some events may have been published" if partial else "message not accepted"
    try:
        yield
    except BusUnavailable:
        raise PublishError(503, "unavailable", f"bus unavailable; {lost}") from None
    except BusBusy:
        raise PublishError(503, "unavailable", f"gateway busy; {lost}") from None


def check_depth(gw: Gateway, raw: bytes | str) -> None:
    """Refuse JSON nested deeper than ``MAX_JSON_DEPTH`` before it is decoded."""
    if too_deep(raw, gw.settings.max_json_depth):
        raise PublishError(
            400, "json_too_deep", f"JSON nested deeper than {gw.settings.max_json_depth}"
        )


def check_type(type_: str) -> None:
    if type_ not in EVENT_TYPES:
        raise PublishError(400, "unknown_type", "unknown event type")
