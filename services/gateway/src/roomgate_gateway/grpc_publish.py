"""The gRPC ``roomgate.gateway.v1.PublishService``: the request translated into a
``PublishBody``, then the same publish handler as ``POST /api/v1/publish``
(``publishing.publish_one``), for backends that speak gRPC."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
import msgspec
from prometheus_client import CollectorRegistry
from roomgate.gateway.v1 import publish_pb2, publish_pb2_grpc
from roomgate_common.grpcserver import GrpcServer, bearer_token
from roomgate_common.telemetry import SingleTracerProvider

from roomgate_gateway.gateway import Gateway
from roomgate_gateway.publishing import (
    PublishBody,
    PublishError,
    PublishMetadata,
    authenticate_publisher,
    check_depth,
    check_type,
    publish_one,
)

SERVICE_NAME = "roomgate.gateway.v1.PublishService"

_PRIORITIES = {
    publish_pb2.PRIORITY_UNSPECIFIED: "normal",
    publish_pb2.PRIORITY_HIGH: "high",
    publish_pb2.PRIORITY_NORMAL: "normal",
    publish_pb2.PRIORITY_LOW: "low",
}

_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}


class PublishServicer(publish_pb2_grpc.PublishServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def Publish(
        self, request: publish_pb2.PublishRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> publish_pb2.PublishResponse:
        gw = self.gateway
        try:
            if len(request.data_json) > gw.limits.max_message_bytes:
                raise PublishError(
                    413, "message_too_big", "data_json exceeds the message size limit"
                )
            check_depth(gw, request.data_json)
            try:
                data = msgspec.json.decode(request.data_json or b"{}")
                body = msgspec.convert(
                    {
                        "room": request.room,
                        "type": request.type,
                        "data": data,
                        "requiresAck": request.requires_ack,
                        "metadata": {
                            "priority": _PRIORITIES.get(request.priority, "normal"),
                            **({"ttl": request.ttl} if request.ttl else {}),
                            **(
                                {"correlation_id": request.correlation_id}
                                if request.correlation_id
                                else {}
                            ),
                        },
                    },
                    PublishBody,
                )
            except msgspec.MsgspecError as exc:
                raise PublishError(400, "invalid_message", str(exc)[:200]) from None
            check_type(body.type)
            principal = await authenticate_publisher(gw, bearer_token(context))
            result = await publish_one(gw, principal, body, sender=request.sender or None)
        except PublishError as exc:
            await _abort(context, exc.counted(gw))
        return publish_pb2.PublishResponse(id=result["id"])


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: PublishError) -> NoReturn:
    await context.abort(
        _STATUS.get(exc.status, grpc.StatusCode.INTERNAL), f"{exc.code}: {exc.message}"
    )
    raise AssertionError("unreachable")


def publish_server(gateway: Gateway, listen: str, registry: CollectorRegistry) -> GrpcServer:
    servicer = PublishServicer(gateway)
    return GrpcServer(
        listen,
        service_names=[SERVICE_NAME],
        register=lambda server: publish_pb2_grpc.add_PublishServiceServicer_to_server(
            servicer, server
        ),
        registry=registry,
        metrics_prefix="roomgate_gateway",
        # SERVER spans continuing the caller's traceparent (call metadata).
        tracer_provider=SingleTracerProvider(gateway.tracer),
    )


__all__ = ["PublishMetadata", "PublishServicer", "publish_server"]
