"""The control channel: what other services announce to every gateway over the bus, and
this gateway's own control channel. An ACL change re-checks the subscriptions it may
affect (``aclchanges``) and drops the kept decisions; a policy change loads the live
policy from Redis and applies the new limits without dropping connections (``limits``);
a revocation closes the sessions it covers (``revocation``); ``drain`` (with a
``fraction``) drains this gateway. The work a message asks for runs in tasks the gateway
owns (``tasks.py``), never in the bus reader."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec
from roomgate_common import keys
from roomgate_common.aclevents import parse_acl_event
from roomgate_common.credentials import CredentialCache

from roomgate_gateway import aclchanges
from roomgate_gateway.clients import KIND_NAMES, Principal
from roomgate_gateway.limits import Limits, apply_policy
from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.revocation import close_revoked
from roomgate_gateway.rooms import RoomTable
from roomgate_gateway.store import BUS_ERRORS, GatewayStore
from roomgate_gateway.subscriptions import Authorizer, Subscriptions
from roomgate_gateway.tasks import Tasks

if TYPE_CHECKING:
    from roomgate_gateway.connection import Connection

log = logging.getLogger(__name__)

_KIND_CODES = {name: code for code, name in KIND_NAMES.items()}


def control_channels(gateway_id: str) -> list[str]:
    """The channels the bus subscribes for ``on_control_message``."""
    return [
        keys.ACL_CHANGED_CHANNEL,
        keys.POLICY_CHANGED_CHANNEL,
        keys.REVOCATIONS_CHANNEL,
        keys.gateway_control_channel(gateway_id),
    ]


class LivePolicy:
    """The GatewayPolicy the operator writes to Redis, applied over the settings' limits.
    ``apply`` receives each new ``Limits``; ``applied`` reports the generation (presence)."""

    def __init__(
        self,
        store: GatewayStore,
        base: Limits,
        *,
        current: Callable[[], Limits],
        apply: Callable[[Limits], None],
        applied: Callable[[], Awaitable[None]],
        metrics: GatewayMetrics,
    ) -> None:
        self._store = store
        self._base = base
        self._current = current
        self._apply = apply
        self._applied = applied
        self._metrics = metrics

    async def load(self) -> None:
        try:
            raw = await self._store.live_policy()
        except BUS_ERRORS:
            return
        if not raw:
            return
        try:
            generation = int(raw.get(b"generation", b"0"))
            policy = msgspec.json.decode(raw.get(b"limits", b"{}"))
        except (ValueError, msgspec.MsgspecError):
            log.warning(
                "live policy is malformed; keeping generation %d", self._current().generation
            )
            return
        if not isinstance(policy, dict):
            return
        limits, rejected = apply_policy(self._base, policy, generation)
        self._apply(limits)
        self._metrics.policy_generation.set(generation)
        if rejected:
            log.warning("policy fields rejected: %s", ",".join(rejected))
        log.info("policy generation %d applied", generation)
        await self._applied()


class Control:
    def __init__(
        self,
        table: RoomTable,
        authorizer: Authorizer,
        subscriptions: Subscriptions,
        policy: LivePolicy,
        credentials: CredentialCache[Principal],
        *,
        drain: Callable[[float], Coroutine[Any, Any, None]],
        tasks: Tasks,
        gateway_id: str,
    ) -> None:
        self._table = table
        self._authorizer = authorizer
        self._subscriptions = subscriptions
        self._policy = policy
        self._credentials = credentials
        self._drain = drain
        self._tasks = tasks
        self._own_channel = keys.gateway_control_channel(gateway_id)

    def on_control_message(self, channel: str, data: bytes) -> None:
        if channel == keys.ACL_CHANGED_CHANNEL:
            self._tasks.start(self.acl_changed(data), name="acl-changed")
        elif channel == keys.POLICY_CHANGED_CHANNEL:
            self._tasks.start(self._policy.load(), name="policy-changed")
        elif channel == keys.REVOCATIONS_CHANNEL:
            close_revoked(self._table, self._credentials, data)
        elif channel == self._own_channel:
            try:
                command = msgspec.json.decode(data)
            except msgspec.MsgspecError:
                return
            if isinstance(command, dict) and command.get("command") == "drain":
                fraction = float(command.get("fraction", 1.0))
                self._tasks.start(self._drain(fraction), name="drain")

    async def acl_changed(self, data: bytes) -> None:
        """Re-check the subscriptions the change may affect (``aclchanges``: roomauthz's
        ``may_affect``, for every relation); evict those no longer allowed. An event that
        cannot be read re-checks every subscription."""
        self._authorizer.forget()
        try:
            changes = parse_acl_event(data).changes
        except ValueError:
            changes = ()
        if not changes:
            for conn in list(self._table.connections):
                await self._subscriptions.recheck(conn)
            return
        candidates: set[Connection] = set()
        for change in changes:
            for room in aclchanges.candidate_rooms(change):
                candidates |= self._table.members(room)
            kind, pid = aclchanges.candidate_principal(change)
            candidates.update(self._table.of_principal(_KIND_CODES[kind], pid))
        for conn in candidates:
            if conn.principal is None:
                continue
            rooms = aclchanges.rooms_to_recheck(changes, conn.kind, conn.user_id, conn.rooms)
            if rooms:
                await self._subscriptions.recheck(conn, rooms)
