"""The gRPC servicers: they translate between protobuf and the pure policy / the ACL store,
and map failures to status codes (INVALID_ARGUMENT, PERMISSION_DENIED, UNAVAILABLE)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram
from roomgate.auth.v1 import auth_pb2
from roomgate.roomauthz.v1 import roomauthz_pb2 as pb
from roomgate.roomauthz.v1 import roomauthz_pb2_grpc as pb_grpc
from roomgate_common.aclevents import Relation
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.grpcserver import is_admin
from roomgate_common.identity import Principal, PrincipalKind, is_canonical_id

from roomgate_roomauthz.acl import AclEntry, AclStore
from roomgate_roomauthz.policy import (
    Action,
    Decision,
    Lookup,
    Policy,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

PRINCIPAL_KINDS = {
    auth_pb2.PRINCIPAL_KIND_USER: PrincipalKind.USER,
    auth_pb2.PRINCIPAL_KIND_AGENT: PrincipalKind.AGENT,
    auth_pb2.PRINCIPAL_KIND_SERVICE: PrincipalKind.SERVICE,
}
ACTIONS = {pb.ACTION_SUBSCRIBE: Action.SUBSCRIBE, pb.ACTION_PUBLISH: Action.PUBLISH}
RELATIONS = {
    pb.RELATION_AGENT_GROUP: Relation.AGENT_GROUP,
    pb.RELATION_USER_GROUP: Relation.USER_GROUP,
    pb.RELATION_USER_TEAM: Relation.USER_TEAM,
}
RELATION_VALUES = {v: k for k, v in RELATIONS.items()}


METRICS_PREFIX = "roomgate_roomauthz"
"""Prefix of every roomauthz metric (like roomgate_auth, roomgate_escalation)."""


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            f"{METRICS_PREFIX}_decisions",
            "Authorisation decisions by action and reason",
            ["action", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{METRICS_PREFIX}_decision_seconds",
            "Time to decide one Authorize / AuthorizeMany / AuthorizeBatch call (ACL reads "
            "included)",
            ["method"],
            registry=registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
        )


async def _abort(context: Context, code: grpc.StatusCode, msg: str) -> NoReturn:
    await context.abort(code, msg)
    raise AssertionError("unreachable")  # pragma: no cover


def principal_from_proto(message: auth_pb2.Principal) -> Principal | None:
    """The policy's principal, or None when kind or id is missing."""
    kind = PRINCIPAL_KINDS.get(message.kind)
    if kind is None or not message.id:
        return None
    return Principal(
        kind=kind,
        id=message.id,
        session_id=message.session_id,
        roles=tuple(message.roles),
        permissions=tuple(message.permissions),
        group_ids=tuple(message.group_ids),
        team_ids=tuple(message.team_ids),
    )


def _decision_message(
    asked: pb.AuthorizeRequest | pb.RoomAction, decision: Decision
) -> pb.Decision:
    """The answer to one asked ``(room, action, message_type)``."""
    return pb.Decision(
        room=asked.room,
        action=asked.action,
        allowed=decision.allowed,
        reason=decision.reason,
        message_type=asked.message_type,
    )


class RoomAuthzServicer(pb_grpc.RoomAuthzServiceServicer):
    def __init__(self, policy: Policy, store: AclStore, metrics: Metrics, max_batch: int) -> None:
        self.policy = policy
        self.store = store
        self.metrics = metrics
        self.max_batch = max_batch

    async def _principal(
        self,
        request: pb.AuthorizeRequest | pb.AuthorizeManyRequest,
        context: Context,
    ) -> Principal:
        principal = (
            principal_from_proto(request.principal) if request.HasField("principal") else None
        )
        if principal is None:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "principal with kind and id is required"
            )
        return principal

    async def _check_batch(self, size: int, what: str, context: Context) -> None:
        if size > self.max_batch:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"at most {self.max_batch} {what}"
            )

    async def _decide(
        self,
        principal: Principal,
        items: list[tuple[str, Action | None, str]],
        context: Context,
    ) -> list[Decision]:
        return await self._decide_all([(principal, *item) for item in items], context)

    async def _decide_all(
        self,
        items: list[tuple[Principal, str, Action | None, str]],
        context: Context,
    ) -> list[Decision]:
        """Decide every ``(principal, room, action, message_type)`` with one read of the ACL
        facts they need."""
        lookups: set[Lookup] = set()
        for principal, room, action, message_type in items:
            lookups |= self.policy.lookups(principal, room, action, message_type)
        try:
            facts = await self.store.facts(lookups) if lookups else {}
        except BusUnavailable:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "acl data unavailable (redis)")
        except BusBusy:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "roomauthz busy, retry")
        decisions = [
            self.policy.decide(principal, room, action, message_type, facts)
            for principal, room, action, message_type in items
        ]
        for (_principal, _room, action, _type), decision in zip(items, decisions, strict=True):
            self.metrics.decisions.labels(
                action.value if action else "invalid", decision.reason
            ).inc()
        return decisions

    async def Authorize(
        self, request: pb.AuthorizeRequest, context: Context
    ) -> pb.AuthorizeResponse:
        start = time.perf_counter()
        principal = await self._principal(request, context)
        action = ACTIONS.get(request.action)
        if action is None:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "action must be subscribe or publish"
            )
        [decision] = await self._decide(
            principal, [(request.room, action, request.message_type)], context
        )
        self.metrics.latency.labels("Authorize").observe(time.perf_counter() - start)
        return pb.AuthorizeResponse(decision=_decision_message(request, decision))

    async def AuthorizeMany(
        self, request: pb.AuthorizeManyRequest, context: Context
    ) -> pb.AuthorizeManyResponse:
        start = time.perf_counter()
        principal = await self._principal(request, context)
        await self._check_batch(len(request.items), "items per AuthorizeMany", context)
        items = [(i.room, ACTIONS.get(i.action), i.message_type) for i in request.items]
        decisions = await self._decide(principal, items, context)
        self.metrics.latency.labels("AuthorizeMany").observe(time.perf_counter() - start)
        return pb.AuthorizeManyResponse(
            decisions=[
                _decision_message(item, d) for item, d in zip(request.items, decisions, strict=True)
            ]
        )

    async def AuthorizeBatch(
        self, request: pb.AuthorizeBatchRequest, context: Context
    ) -> pb.AuthorizeBatchResponse:
        start = time.perf_counter()
        await self._check_batch(len(request.requests), "requests per AuthorizeBatch", context)
        items: list[tuple[Principal, str, Action | None, str]] = []
        for r in request.requests:
            items.append(
                (await self._principal(r, context), r.room, ACTIONS.get(r.action), r.message_type)
            )
        decisions = await self._decide_all(items, context)
        self.metrics.latency.labels("AuthorizeBatch").observe(time.perf_counter() - start)
        return pb.AuthorizeBatchResponse(
            decisions=[
                _decision_message(r, d) for r, d in zip(request.requests, decisions, strict=True)
            ]
        )


class AclAdminServicer(pb_grpc.AclAdminServiceServicer):
    def __init__(self, store: AclStore, admin_secret: str, max_changes: int) -> None:
        self.store = store
        self.admin_secret = admin_secret
        self.max_changes = max_changes

    async def _require_admin(self, context: Context) -> None:
        if not is_admin(context, self.admin_secret):
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED, "admin credential required")

    async def _entries(self, raw: list[pb.AclEntry], context: Context) -> list[AclEntry]:
        entries: list[AclEntry] = []
        seen: set[AclEntry] = set()
        for e in raw:
            relation = RELATIONS.get(e.relation)
            if relation is None:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "relation is required")
            if not is_canonical_id(e.subject_id) or not is_canonical_id(e.object_id):
                await _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "subject_id and object_id must be canonical positive integers",
                )
            entry = AclEntry(relation, e.subject_id, e.object_id)
            if entry not in seen:
                seen.add(entry)
                entries.append(entry)
        return entries

    async def ChangeAcl(
        self, request: pb.ChangeAclRequest, context: Context
    ) -> pb.ChangeAclResponse:
        await self._require_admin(context)
        if len(request.add) + len(request.remove) > self.max_changes:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"at most {self.max_changes} entries per ChangeAcl",
            )
        add = await self._entries(list(request.add), context)
        remove = await self._entries(list(request.remove), context)
        if set(add) & set(remove):
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "an entry is both added and removed"
            )
        try:
            version, changes = await self.store.change(add, remove)
        except BusUnavailable:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "acl data unavailable (redis)")
        except BusBusy:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "roomauthz busy, retry")
        log.info(
            "acl change applied",
            extra={
                "version": version,
                "requested": [
                    f"{c.op} {c.relation.value} {c.subject_id} {c.object_id}" for c in changes
                ],
            },
        )
        return pb.ChangeAclResponse(version=version)

    async def ListAcl(self, request: pb.ListAclRequest, context: Context) -> pb.ListAclResponse:
        await self._require_admin(context)
        if request.relation == pb.RELATION_UNSPECIFIED:
            relations = list(Relation)
        elif request.relation in RELATIONS:
            relations = [RELATIONS[request.relation]]
        else:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "unknown relation")
        if request.subject_id and not is_canonical_id(request.subject_id):
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "subject_id must be a canonical positive integer",
            )
        try:
            entries, version = await self.store.list(relations, request.subject_id)
        except BusUnavailable:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "acl data unavailable (redis)")
        except BusBusy:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "roomauthz busy, retry")
        return pb.ListAclResponse(
            entries=[
                pb.AclEntry(
                    relation=RELATION_VALUES[e.relation],
                    subject_id=e.subject_id,
                    object_id=e.object_id,
                )
                for e in entries
            ],
            version=version,
        )
