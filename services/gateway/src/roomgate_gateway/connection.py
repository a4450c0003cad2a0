"""One client connection: the protocol state machine driven by a WebSocket (raw ASGI).

The read side runs in the ASGI task uvicorn gives every connection. The write side costs
nothing while the client keeps up. Under the gateway's own WebSocket protocol
(``wsprotocol``) a delivery is staged and, at the end of the event-loop turn, everything the
turn handed the connection leaves in one ``transport.write`` of the messages' frame bytes,
each built once for all its recipients (``coalescing``); under any other ASGI server
``_send_now`` steps the ASGI ``send`` coroutine eagerly. Only when the socket pushes back
does the connection get a writer task, which drains the bounded priority queue
(``OutboundQueue``), several messages per ``batch`` frame, and exits when the queue is
empty. Fan-out therefore never waits for a slow client.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, MutableMapping
from typing import TYPE_CHECKING, Any, cast

import msgspec
from roomgate_common.envelope import encode, make_envelope

from roomgate_gateway import protocol as p
from roomgate_gateway.budget import Verdict
from roomgate_gateway.clients import KIND_NAMES, AuthRejected, PeerUnavailable, Principal
from roomgate_gateway.codes import (
    BUSY_REASON,
    CLOSE_REASONS,
    SLOW_CONSUMER_REASON,
    CloseCode,
    ErrorCode,
)
from roomgate_gateway.framing import batch_frame, frame_of, text_frame, wire_of
from roomgate_gateway.outbound import OutboundQueue, Outgoing, SlowConsumer
from roomgate_gateway.recovery import RecoveryGate
from roomgate_gateway.session import Answer, Close, GaveUp, Resend, Session, Token, WarnExpiry
from roomgate_gateway.state import State
from roomgate_gateway.wsprotocol import GatewayWebSocketProtocol

if TYPE_CHECKING:
    from roomgate_gateway.coalescing import WriteCoalescer
    from roomgate_gateway.host import ConnectionHost

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

_json = msgspec.json.Encoder()


class _Resume:
    """Continue, inside a task, a coroutine that was stepped by hand and suspended on
    ``first`` (what ``yield from`` does; Python 3.12's eager tasks do the same)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        value = self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:
                try:
                    value = self.coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = self.coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class Connection:
    __slots__ = (
        "_busy",
        "_direct",
        "_gate",
        "_queue",
        "_receive",
        "_send",
        "_staged",
        "_timer",
        "_token",
        "_writer",
        "compress",
        "gw",
        "ip",
        "principal",
        "rooms",
        "session",
        "sm",
    )

    def __init__(
        self,
        gw: ConnectionHost,
        send: Send,
        receive: Receive,
        ip: str,
        compress: bool,
        direct: GatewayWebSocketProtocol | None = None,
        token: str | None = None,
    ) -> None:
        self.gw = gw
        # The handshake's token, until run() takes it (no frame keeps it past the auth)
        self._token = token
        self._send = send
        # The connection's WebSocket protocol when it takes frames directly (wsprotocol)
        self._direct = direct
        self._receive = receive
        self.ip = ip
        self.compress = compress
        # The protocol state (session.py): state machine, deadlines, budget, acks
        self.session: Session[Outgoing] = Session(
            now=time.monotonic(),
            auth_deadline=gw.limits.auth_deadline,
            budget=gw.budget_policy,
            ack_timeout=gw.settings.ack_timeout,
            ack_retries=gw.settings.ack_retries,
        )
        self.sm = self.session.sm  # read on every delivery: one attribute away
        if direct is not None:  # its pongs to the gateway's pings are liveness
            direct.liveness = self.session
        self.principal: Principal | None = None
        self.rooms: set[str] = set()
        # Rooms whose history is being replayed, or was just (recovery.py); None otherwise
        self._gate: RecoveryGate[Outgoing] | None = None
        self._queue: OutboundQueue | None = None
        self._busy = False
        self._writer: asyncio.Task[None] | None = None
        # What this loop turn handed over, written at its end (coalescing.py): one
        # message, or a list of them
        self._staged: Outgoing | list[Outgoing] | None = None
        # Armed at the session's next deadline (token expiry, ack resends), if any
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ identity
    @property
    def user_id(self) -> str:
        assert self.principal is not None
        return self.principal.id

    @property
    def kind(self) -> str:
        assert self.principal is not None
        return KIND_NAMES.get(self.principal.kind, "unknown")

    @property
    def sender(self) -> str:
        return f"{self.kind}-{self.user_id}" if self.principal else "anonymous"

    # ------------------------------------------------------------------ outbound
    def deliver(self, item: Outgoing) -> None:
        """Hand one message to this client; never waits."""
        if self.sm.state is not State.OPEN:
            self.gw.metrics.drops.labels("closed").inc()
            return
        gate = self._gate
        if gate is not None:
            if not gate.admit(item):
                return  # held during a replay, or a late copy of a replayed message
            if gate.idle:
                self._gate = None
        if item.ack_id is not None:
            self._await_ack(item)
        self._write(item)

    def _deliver_past_gate(self, item: Outgoing) -> None:
        # deliver() repeats these lines inline rather than calling this: it runs once per
        # recipient of every message, where a call more is a cost per delivery.
        if self.sm.state is not State.OPEN:
            self.gw.metrics.drops.labels("closed").inc()
            return
        if item.ack_id is not None:
            self._await_ack(item)
        self._write(item)

    def _deliver_replay(self, items: list[Outgoing], batched: bool) -> None:
        """A recovery replay (past the recovery gate). More than OUTBOUND_BATCH_MAX messages
        leave in ``batch`` frames of that many (several wait for this client: a
        10,000-message replay is 1,000 frames to parse, not 10,000); fewer, one by one."""
        most = self.gw.settings.outbound_batch_max
        # (A `compressed` frame holds one room event: compressing clients get them singly.)
        if (
            not batched
            or len(items) <= most
            or most == 1
            or self.compress
            or self.sm.state is not State.OPEN
        ):
            for item in items:
                self._deliver_past_gate(item)
            return
        for item in items:
            if item.ack_id is not None:
                self._await_ack(item)
        for start in range(0, len(items), most):
            chunk = items[start : start + most]
            last = chunk[-1]
            self._write(
                Outgoing(
                    batch_frame(chunk),
                    "normal",
                    room=last.room,
                    offset=last.offset,
                    epoch=last.epoch,
                    count=len(chunk),
                )
            )

    def joined(self, room: str) -> None:
        """The room table made this connection a member of ``room`` (rooms.py)."""
        self.rooms.add(room)

    def left(self, room: str) -> None:
        """The room table took this connection out of ``room``."""
        self.rooms.discard(room)

    def hold(self, room: str) -> None:
        """Hold ``room``'s live messages while its history is read (``release`` ends it)."""
        if self._gate is None:
            self._gate = RecoveryGate()
        self._gate.hold(room)

    def holding(self, room: str) -> bool:
        return self._gate is not None and self._gate.holding(room)

    def release(
        self,
        room: str,
        replay: list[Outgoing],
        *,
        upto: int,
        epoch: str = "",
        recovered: bool = True,
        batched: bool = True,
    ) -> None:
        """End the hold on ``room``: deliver ``replay`` (its history up to ``upto``, or the
        mailbox; in ``batch`` frames when long and ``batched``), then the held live messages
        it did not cover; from now on late live copies of what it covered are dropped."""
        gate = self._gate
        released: list[Outgoing] = []
        if gate is not None:
            released = gate.release(room, upto=upto, epoch=epoch, recovered=recovered)
            if gate.idle:
                self._gate = None
        self._deliver_replay(replay, batched)
        for item in released:
            self._deliver_past_gate(item)

    @property
    def queue_depth(self) -> int:
        """Messages waiting in the outbound queue (the socket pushed back)."""
        return len(self._queue) if self._queue is not None else 0

    def _write(self, item: Outgoing) -> None:
        if self._busy:
            self._enqueue(item)
            return
        if self._direct is None:
            if self._send_now(self._frame_of(item), item):
                self.gw.coalescer.wrote([item])
            return
        # Staged until the end of this loop turn (coalescing.py): one socket write then.
        # One message (steady traffic) is kept as it is: no list per connection.
        staged = self._staged
        if staged is None:
            self._staged = item
            self.gw.coalescer.staged(self)
        elif staged.__class__ is list:
            staged.append(item)
            if len(staged) >= self.gw.limits.outbound_queue_size:
                # Bounded like the queue: written now, and once the socket pushes back
                # the rest of the turn waits in the queue (its drop policy applies).
                self.flush_staged()
        else:
            self._staged = [staged, item]  # type: ignore[list-item]

    def flush_staged(self, counts: WriteCoalescer | None = None) -> None:
        """Write what this turn staged, in order, in one ``transport.write``: the frames
        are the ones each message would get alone (built once for all its recipients), so
        coalescing changes the number of system calls, not what the client receives.
        ``counts`` (the flushing coalescer) counts the write."""
        staged = self._staged
        if staged is None:
            return
        self._staged = None
        direct = self._direct
        assert direct is not None
        if counts is None:  # outside a flush (a close, an ASGI send): publish with the next
            counts = self.gw.coalescer
            counts.publish_soon()
        if staged.__class__ is not list:
            item: Outgoing = staged  # type: ignore[assignment]
            if not self._busy and direct.writable_now():  # the common case, kept short
                direct.transport.write(self._wire_of(item))
                counts.writes += 1
                if item.offset:
                    counts.delivered += item.count
                    counts.nbytes += len(item.frame)
                return
            items = [item]
        else:
            items = staged
        if self._busy:
            for item in items:
                self._enqueue(item)
        elif direct.writable_now():
            direct.transport.write(b"".join([self._wire_of(item) for item in items]))
            counts.wrote(items)
        elif direct.can_write():  # the socket pushed back: queue, and write when it drains
            self._busy = True
            for item in items:
                self._enqueue(item)
            self._writer = asyncio.get_running_loop().create_task(self._write_behind(None))
        else:
            self.gw.metrics.drops.labels("closed").inc(len(items))

    # ------------------------------------------------------------------ time
    def _rearm(self) -> None:
        """Arm the one timer at the session's next deadline (when sooner than armed)."""
        when = self.session.next_deadline()
        timer = self._timer
        if timer is not None:
            if when is not None and timer.when() <= when:
                return  # fires first; re-arms then
            timer.cancel()
            self._timer = None
        if when is not None:
            # In an empty context: a timer keeps its context (a span's) alive until it fires
            self._timer = asyncio.get_running_loop().call_at(
                when, self._on_deadline, context=contextvars.Context()
            )

    def _on_deadline(self) -> None:
        self._timer = None
        for due in self.session.on_deadline(asyncio.get_running_loop().time()):
            if isinstance(due, Resend):
                self.gw.metrics.redeliveries.inc()
                self._write(due.message)
            elif isinstance(due, GaveUp):
                # Given up on this connection; a user's mailbox still has it for the next one.
                self.gw.metrics.drops.labels("ack_timeout").inc(due.count)
            elif isinstance(due, WarnExpiry):
                self.send_message(
                    "token_expiring",
                    {"expires_at": due.expires_at, "seconds_left": due.seconds_left},
                )
            elif isinstance(due, Close):
                self.close_soon(due.code, due.reason)
        self._rearm()

    # ------------------------------------------------------------------ acknowledged delivery
    def _await_ack(self, item: Outgoing) -> None:
        assert item.ack_id is not None
        if self.session.await_ack(item.ack_id, item, asyncio.get_running_loop().time()):
            self._rearm()
            self.gw.keep_until_acked(self, item)

    def ack_received(self, ack_id: str) -> bool:
        """Stop resending ``ack_id``; False when this connection was not waiting for it."""
        return self.session.acked(ack_id)

    def _enqueue(self, item: Outgoing) -> None:
        if self._queue is None:
            self._queue = OutboundQueue(self.gw.limits.outbound_queue_size)
        self._queue.maxsize = self.gw.limits.outbound_queue_size
        try:
            dropped = self._queue.push(item)
        except SlowConsumer:
            self.gw.metrics.drops.labels("slow_consumer").inc(len(self._queue) + 1)
            self.gw.metrics.slow_consumer_closes.inc()
            self.close_soon(CloseCode.TRY_AGAIN_LATER, reason=SLOW_CONSUMER_REASON)
            return
        if dropped is not None:
            self.gw.metrics.drops.labels(f"queue_full_{dropped.priority}").inc()

    def _frame_of(self, item: Outgoing) -> str:
        return frame_of(item, self.gw.settings.compression_threshold if self.compress else None)

    def _wire_of(self, item: Outgoing) -> bytes:
        if not self.compress:  # the common case: one attribute, cached for all recipients
            wire = item.wire
            if wire is None:
                wire = item.wire = text_frame(item.frame.encode())
            return wire
        return wire_of(item, self.gw.settings.compression_threshold)

    def _send_now(self, frame: str, item: Outgoing | None = None) -> bool:
        """Write ``frame`` through the ASGI ``send`` now; True when it was written. What
        this turn staged goes first (the frame must not overtake it)."""
        if self._staged is not None:
            self.flush_staged()
        # An ASGI send is a coroutine function: stepped by hand, finished in a task if the
        # socket pushes back
        coro = cast(
            Coroutine[Any, Any, None], self._send({"type": "websocket.send", "text": frame})
        )
        try:
            suspended_on = coro.send(None)
        except StopIteration:
            return True
        except Exception:
            self.gw.metrics.drops.labels("closed").inc()
            return False
        # The socket pushed back: continue in a writer task, queue everything after it.
        self._busy = True
        self._writer = asyncio.get_running_loop().create_task(
            self._write_behind(_Resume(coro, suspended_on), item)
        )
        return False

    async def _write_behind(self, pending: _Resume | None, item: Outgoing | None = None) -> None:
        direct = self._direct
        coalescer = self.gw.coalescer
        try:
            if pending is not None:
                await pending
                if item is not None:
                    coalescer.wrote([item])
            batch_max = self.gw.settings.outbound_batch_max
            while self._queue and self.sm.state is State.OPEN:
                items, expired = self._queue.pop_many(batch_max, time.monotonic())
                if expired:
                    self.gw.metrics.drops.labels("expired").inc(expired)
                if not items:
                    continue
                # A replay's batch frames (count > 1) are never nested in another.
                one_by_one = len(items) == 1 or any(i.count > 1 for i in items)
                if direct is not None:
                    await direct.writable.wait()
                    if not direct.can_write():
                        self.gw.metrics.drops.labels("closed").inc(len(items) + len(self._queue))
                        return
                    direct.transport.write(
                        b"".join([self._wire_of(i) for i in items])
                        if one_by_one
                        else text_frame(batch_frame(items).encode())
                    )
                elif one_by_one:
                    for i in items:
                        await self._send({"type": "websocket.send", "text": self._frame_of(i)})
                else:
                    await self._send({"type": "websocket.send", "text": batch_frame(items)})
                coalescer.wrote(items)
        except Exception:
            self.gw.metrics.drops.labels("closed").inc(len(self._queue or ()))
        finally:
            self._busy = False
            self._writer = None

    def send_message(
        self,
        type_: str,
        data: dict[str, Any] | None = None,
        *,
        room: str | None = None,
        correlation_id: str | None = None,
        priority: str = "high",
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Send a server-emitted message (id, timestamp and sender set by the gateway)."""
        metadata: dict[str, Any] = {"priority": priority}
        if correlation_id:
            metadata["correlation_id"] = correlation_id
        env = make_envelope(type_, sender="gateway", room=room, data=data, metadata=metadata)
        raw = encode(env)
        if extra:
            raw = raw[:-1] + b"," + _json.encode(extra)[1:]
        self.gw.metrics.messages_out.labels(type_).inc()
        self.gw.metrics.bytes_out.inc(len(raw))
        self.deliver(Outgoing(raw.decode(), "high"))

    def error(
        self,
        code: ErrorCode,
        message: str,
        *,
        ref: p._Base | None = None,
        ref_id: str | None = None,
        **extra: Any,
    ) -> None:
        self.gw.metrics.errors.labels(code.value).inc()
        data: dict[str, Any] = {"code": code.value, "message": message, **extra}
        if ref_id or (ref is not None and ref.id):
            data["ref_id"] = ref_id or (ref.id if ref else None)
        self.send_message("error", data, correlation_id=_correlation(ref))

    # ------------------------------------------------------------------ closing
    async def close(self, code: CloseCode, reason: str | None = None) -> None:
        if self.sm.state in (State.CLOSING, State.CLOSED):
            return
        if self._staged is not None:  # what was handed over before the close goes first
            self.flush_staged()
        self.sm.to(State.CLOSING)
        self.gw.metrics.closes.labels(str(int(code))).inc()
        with contextlib.suppress(Exception):
            await self._send(
                {
                    "type": "websocket.close",
                    "code": int(code),
                    "reason": reason or CLOSE_REASONS[code],
                }
            )

    def close_soon(self, code: CloseCode, reason: str | None = None) -> None:
        """Close from synchronous code (fan-out, timers)."""
        if self.sm.state is State.OPEN or self.sm.state is State.CONNECTING:
            # owned by the gateway (tasks.py): referenced until done, cancelled on stop
            self.gw.tasks.start(self.close(code, reason), "close")

    async def flush(self, grace: float) -> None:
        """Wait (bounded) until everything queued for this client is written."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), grace)

    # ------------------------------------------------------------------ lifecycle
    async def run(self, token: str | None = None) -> None:
        gw = self.gw
        if token is None:
            token, self._token = self._token, None
        opened = 0.0  # when authenticated: the connection duration histogram
        try:
            if (await self._receive())["type"] != "websocket.connect":
                return
            await self._send({"type": "websocket.accept"})
            if gw.draining:
                await self._reconnect_hint_and_close()
                return
            if not gw.handshakes.enter():  # a storm: come back later, with backoff
                gw.metrics.connects.labels("busy").inc()
                await self.close(CloseCode.TRY_AGAIN_LATER, BUSY_REASON)
                return
            # In a task of its own: what the connect span and its children set in the
            # context variables would otherwise stay in this task's context (memory).
            try:
                authenticated = await asyncio.get_running_loop().create_task(self._connect(token))
            finally:  # here, not in the task: a task cancelled before it ran has no finally
                gw.handshakes.leave()
            token = None  # this frame lives as long as the connection; the token must not
            if not authenticated:
                return
            opened = time.monotonic()
            await self._read_loop()  # returns when the client goes away or is closed
        except Exception:
            log.exception("connection failed")
            await self.close(CloseCode.INTERNAL_ERROR)
        finally:
            await gw.unregister(self)
            if opened:
                gw.metrics.connection_duration.observe(time.monotonic() - opened)
            self.session.closed()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def _connect(self, token: str | None) -> bool:
        with self.gw.tracer.start_as_current_span("connect", attributes={"net.peer.ip": self.ip}):
            return await self._authenticate(token)

    async def _authenticate(self, token: str | None) -> bool:
        gw = self.gw
        session = self.session
        while token is None:
            remaining = session.auth_remaining(time.monotonic())
            if remaining <= 0:
                gw.metrics.connects.labels("auth_timeout").inc()
                await self.close(CloseCode.UNAUTHORIZED)
                return False
            try:
                message = await asyncio.wait_for(self._receive(), remaining)
            except TimeoutError:
                continue
            if message["type"] == "websocket.disconnect":
                gw.metrics.connects.labels("gone").inc()
                return False
            raw = message.get("text") or message.get("bytes") or b""
            # Frames before the token count against the budget too (an unauthenticated
            # flood must not be answered frame for frame): over it, dropped unanswered.
            verdict = session.charge(gw.budget_policy, time.monotonic(), ping=False)
            if verdict is not Verdict.ALLOW:
                gw.metrics.drops.labels("inbound_over_budget").inc()
                if verdict is Verdict.CLOSE:
                    gw.metrics.connects.labels("rate_limited").inc()
                    await self.close(CloseCode.RATE_LIMITED)
                    return False
                continue
            step = session.first_frame(raw, gw.limits.max_message_bytes)
            if isinstance(step, Token):
                token = step.value
            elif isinstance(step, Answer):
                self._error_now(step.code, step.message, step.ref_id)
            elif isinstance(step, Close):
                await self.close(step.code)
                return False
        try:
            principal = await gw.authenticate(token)
        except AuthRejected as exc:
            gw.metrics.connects.labels("unauthorized").inc()
            self._error_now(ErrorCode.UNAUTHORIZED, "token rejected", None, reason=exc.reason)
            await self.close(CloseCode.UNAUTHORIZED)
            return False
        except PeerUnavailable:
            gw.metrics.connects.labels("auth_unavailable").inc()
            await self.close(CloseCode.TRY_AGAIN_LATER)
            return False
        self.principal = principal
        refused = await gw.register(self)
        if refused in ("redis_unavailable", "redis_busy"):  # limits unchecked: try later
            gw.metrics.connects.labels(refused).inc()
            await self.close(CloseCode.TRY_AGAIN_LATER)
            return False
        if refused is not None:
            gw.metrics.connects.labels(refused).inc()
            self._error_now(ErrorCode.CONNECTION_LIMIT, f"too many connections ({refused})", None)
            await self.close(CloseCode.CONNECTION_LIMIT)
            return False
        session.opened()
        if gw.draining:  # SIGTERM arrived while this client authenticated
            gw.metrics.connects.labels("draining").inc()
            await self._reconnect_hint_and_close()
            return False
        gw.metrics.connects.labels("ok").inc()
        self._arm_expiry(principal.expires_at)
        limits = gw.limits
        self.send_message(
            "welcome",
            {
                "user_id": principal.id,
                "kind": self.kind,
                "session_id": principal.session_id,
                "roles": list(principal.roles),
                "permissions": list(principal.permissions),
                "groups": list(principal.group_ids),
                "teams": list(principal.team_ids),
                "expires_at": principal.expires_at,
                "heartbeat_interval": limits.heartbeat_interval,
                "heartbeat_timeout": limits.heartbeat_timeout,
                "server_time": time.time(),
                "gateway": gw.settings.gateway_id,
                "compression": "deflate" if self.compress else None,
                "limits": limits.public(),
            },
        )
        await gw.join_personal_rooms(self)
        return True

    def _error_now(self, code: ErrorCode, message: str, ref_id: str | None, **extra: Any) -> None:
        """An error before the connection is OPEN (deliver() would drop it)."""
        self.gw.metrics.errors.labels(code.value).inc()
        data: dict[str, Any] = {"code": code.value, "message": message, **extra}
        if ref_id:
            data["ref_id"] = ref_id
        env = make_envelope("error", sender="gateway", data=data, metadata={"priority": "high"})
        self._send_now(encode(env).decode())

    def _arm_expiry(self, expires_at: int) -> None:
        self.session.arm_expiry(
            expires_at,
            time.time(),
            asyncio.get_running_loop().time(),
            self.gw.settings.token_expiry_warning,
        )
        if self._timer is not None:  # the token's deadlines may be later than armed
            self._timer.cancel()
            self._timer = None
        self._rearm()

    async def _reconnect_hint_and_close(self, delay_ms: int | None = None) -> None:
        if delay_ms is None:
            delay_ms = random.randint(0, self.gw.settings.reconnect_jitter_ms)
        env = make_envelope(
            "reconnect",
            sender="gateway",
            data={"delay_ms": delay_ms, "reason": "draining"},
            metadata={"priority": "high"},
        )
        self._send_now(encode(env).decode())
        await self.close(CloseCode.SERVICE_RESTART)

    async def drain(self, grace: float) -> None:
        """Flush what is queued, hint a jittered reconnect delay, close 1012."""
        if self.sm.state is not State.OPEN:
            return
        await self.flush(grace)
        await self._reconnect_hint_and_close()

    async def _read_loop(self) -> None:
        gw = self.gw
        receive = self._receive
        session = self.session
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
            refused = session.frame_in(size, time.monotonic(), gw.limits.max_message_bytes)
            if refused is not None:
                gw.metrics.errors.labels("message_too_big").inc()
                await self.close(refused.code)
                return
            if self.sm.state is not State.OPEN:
                return
            await self.handle_raw(raw)

    # ------------------------------------------------------------------ inbound
    async def handle_raw(self, raw: str | bytes, *, nested: bool = False) -> None:
        self.gw.metrics.bytes_in.inc(len(raw))
        try:
            msg = p.parse_message(raw, nested=nested)
        except p.ProtocolError as exc:
            self.gw.metrics.messages_in.labels("invalid").inc()
            self.error(exc.code, exc.message, ref_id=exc.ref_id)
            return
        await self.handle(msg)

    async def handle(self, msg: p.ClientMessage) -> None:
        gw = self.gw
        type_ = msg.type if isinstance(msg, p.Event) else type(msg).__struct_config__.tag
        gw.metrics.messages_in.labels(type_ if isinstance(type_, str) else "unknown").inc()
        if not await self._within_budget(msg):
            return
        if isinstance(msg, p.Ping):
            self.send_message(
                "pong",
                {"timestamp": msg.echo(), "server_time": time.time()},
                correlation_id=_correlation(msg),
            )
            return
        # Every message counts against the per-user rate except acks and the wrappers
        # (their contents count one by one); all of them count against the budget above.
        if not isinstance(msg, p.Ack | p.Batch | p.Compressed) and not await gw.within_rate(self):
            return
        if isinstance(msg, p.Batch):
            if len(msg.messages) > gw.settings.max_batch_messages:
                self.error(
                    ErrorCode.BATCH_TOO_LARGE,
                    f"at most {gw.settings.max_batch_messages} messages per batch",
                    ref=msg,
                )
                return
            for item in msg.messages:
                await self.handle_raw(bytes(item), nested=True)
            return
        if isinstance(msg, p.Compressed):
            try:
                inflated = p.inflate(msg.data, max_inflated=gw.settings.max_inflated_bytes)
            except p.ProtocolError as exc:
                self.error(exc.code, exc.message, ref=msg)
                return
            await self.handle_raw(inflated, nested=False)
            return
        if isinstance(msg, p.Subscribe):
            await gw.subscribe(self, msg)
        elif isinstance(msg, p.Unsubscribe):
            await gw.unsubscribe(self, msg)
        elif isinstance(msg, p.Event):
            await gw.client_publish(self, msg)
        elif isinstance(msg, p.Refresh):
            await self._refresh(msg)
        elif isinstance(msg, p.Auth):
            self.error(
                ErrorCode.ALREADY_AUTHENTICATED, "use `refresh` to replace the token", ref=msg
            )
        elif isinstance(msg, p.Ack):
            gw.acked(self, msg.ackId)

    async def _within_budget(self, msg: p.ClientMessage) -> bool:
        """Charge ``msg`` to the connection's inbound budget (every message, wrappers and
        what is inside them included); yield to the event loop every few messages."""
        gw = self.gw
        if self.sm.state is not State.OPEN:
            return False
        policy = gw.budget_policy
        verdict = self.session.charge(policy, time.monotonic(), ping=isinstance(msg, p.Ping))
        if verdict is Verdict.ALLOW:
            if self.session.should_yield(policy):
                await asyncio.sleep(0)  # queued frames must not hold the loop
            return self.sm.state is State.OPEN
        gw.metrics.drops.labels("inbound_over_budget").inc()
        if verdict is Verdict.CLOSE:
            await self.close(CloseCode.RATE_LIMITED)
        elif verdict is Verdict.REFUSE_FIRST:
            self.error(
                ErrorCode.RATE_LIMITED,
                f"more than {policy.rate:g} messages per second on this connection",
                retry_after=1,
            )
        return False

    async def _refresh(self, msg: p.Refresh) -> None:
        token = msg.credential()
        if not token:
            self.error(ErrorCode.INVALID_MESSAGE, "`token` is required", ref=msg)
            return
        try:
            principal = await self.gw.authenticate(token)
        except AuthRejected as exc:
            self.error(ErrorCode.REFRESH_FAILED, "token rejected", ref=msg, reason=exc.reason)
            return
        except PeerUnavailable:
            self.error(ErrorCode.UNAVAILABLE, "auth service unavailable, retry", ref=msg)
            return
        assert self.principal is not None
        if (principal.kind, principal.id) != (self.principal.kind, self.principal.id):
            self.error(
                ErrorCode.REFRESH_FAILED,
                "token is for another principal",
                ref=msg,
                reason="principal_mismatch",
            )
            return
        self.principal = principal
        self._arm_expiry(principal.expires_at)
        self.send_message(
            "token_refreshed",
            {"expires_at": principal.expires_at},
            correlation_id=_correlation(msg),
        )
        # The new token may allow less: its subscriptions are decided again, as after an
        # ACL change (`unsubscribed` with roomauthz's reason for each one it loses).
        await self.gw.recheck(self)


def _correlation(msg: p._Base | None) -> str | None:
    if msg is None:
        return None
    if msg.metadata is not None and msg.metadata.correlation_id:
        return msg.metadata.correlation_id
    return None
