"""The alert events this service publishes into rooms, through the one room publisher.

Every event has a deterministic envelope id (``<alert_id>:esc:<level>``, ``<alert_id>:ack``,
``<alert_id>:res``, ``<alert_id>:trig:<n>``): the same in every room it goes to, so a client
in several rooms, and the recovery of an interrupted escalation, recognise it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from opentelemetry import trace
from roomgate_common.envelope import make_envelope
from roomgate_common.publisher import Published, Publisher
from roomgate_common.telemetry import inject_trace

ALERTS_ROOM = "alerts"

tracer = trace.get_tracer("roomgate.escalation")


class AlertEvents:
    def __init__(self, publisher: Publisher, *, sender: str) -> None:
        self._publisher = publisher
        self.sender = sender

    async def publish(
        self, room: str, type_: str, envelope_id: str, data: dict[str, Any]
    ) -> Published:
        """Publish one alert event (priority high) with the current trace context."""
        metadata: dict[str, Any] = {"priority": "high"}
        with tracer.start_as_current_span(
            f"publish {type_}", attributes={"roomgate.room": room, "roomgate.id": envelope_id}
        ):
            inject_trace(metadata)
            envelope = make_envelope(
                type_, sender=self.sender, room=room, data=data, metadata=metadata
            )
            envelope = msgspec.structs.replace(envelope, id=envelope_id)
            return await self._publisher.publish_envelope(envelope)

    async def publish_many(
        self, rooms: Iterable[str], type_: str, envelope_id: str, data: dict[str, Any]
    ) -> None:
        for room in rooms:
            await self.publish(room, type_, envelope_id, data)
