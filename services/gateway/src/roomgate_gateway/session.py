"""One client session, without I/O: frames and a clock in; what to answer, what to send and
one next deadline out. The WebSocket connection (``connection.py``) and the SSE fallback
(``fallback.py``, which drives the same connection over HTTP) move bytes and arm one timer;
every decision about the session is made here.

What the session owns:

- the connection state machine (``state.py``): CONNECTING → OPEN → CLOSING → CLOSED;
- the authentication phase: the deadline for a token (``AUTH_DEADLINE``) and what each
  frame before it means (``first_frame``: a token, an error to answer, or a close);
- the inbound checks of every frame once open: its size (``MAX_MESSAGE_BYTES``) and its cost
  against the connection's budget (``budget.py``; every message counts, wrappers too);
- liveness: when the client was last heard from (a frame or a pong), against the heartbeat
  timeout;
- the token's lifetime: a ``token_expiring`` warning ``TOKEN_EXPIRY_WARNING`` seconds before
  it expires, then a close (4001) when it does; a ``refresh`` re-arms both;
- acknowledged delivery (``acks.py``): resends of unacknowledged ``requiresAck`` messages.

``next_deadline`` is the one moment at which ``on_deadline`` has something to do (an
expiry warning or close, a resend): the connection arms one timer for it. Heartbeat
timeouts are not in it: the gateway's sweep checks ``heartbeat_expired`` for every
connection once a second, which is cheaper than re-arming a timer at every frame.

Times are monotonic seconds (``loop.time()``); the token's expiry is wall-clock time,
converted once when armed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from roomgate_gateway import protocol as p
from roomgate_gateway.acks import AckTracker
from roomgate_gateway.budget import InboundBudget, InboundBudgetPolicy, Verdict
from roomgate_gateway.codes import CloseCode, ErrorCode
from roomgate_gateway.state import ConnectionStateMachine, State

M = TypeVar("M")


# ---------------------------------------------------------------------------- outputs
@dataclass(frozen=True, slots=True)
class Token:
    """The first frames carried a token: authenticate it."""

    value: str


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the client with an ``error`` and keep reading."""

    code: ErrorCode
    message: str
    ref_id: str | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with ``code``."""

    code: CloseCode
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class WarnExpiry:
    """Send ``token_expiring``."""

    expires_at: int
    seconds_left: int


@dataclass(frozen=True, slots=True)
class Resend(Generic[M]):
    """Send ``message`` again: it was not acknowledged in time."""

    message: M


@dataclass(frozen=True, slots=True)
class GaveUp:
    """``count`` messages were resent as often as allowed and are no longer waited for."""

    count: int


AuthStep = Token | Answer | Close
Timed = WarnExpiry | Close | Resend[M] | GaveUp

TOKEN_EXPIRED_REASON = "Token expired"  # noqa: S105 (a close reason, not a secret)


class Session(Generic[M]):
    """The state of one client session. ``M`` is the connection's outgoing message type
    (``Outgoing``); the session only keeps them for resending."""

    __slots__ = (
        "_auth_by",
        "_budget",
        "_close_at",
        "_expires_at",
        "_warn_at",
        "ack_retries",
        "ack_timeout",
        "acks",
        "last_seen",
        "sm",
    )

    def __init__(
        self,
        *,
        now: float,
        auth_deadline: float,
        budget: InboundBudgetPolicy,
        ack_timeout: float,
        ack_retries: int,
    ) -> None:
        self.sm = ConnectionStateMachine()
        self.last_seen = now
        self._auth_by = now + auth_deadline
        self._budget = InboundBudget(budget, now)
        self.ack_timeout = ack_timeout
        self.ack_retries = ack_retries
        # Made on the first requiresAck message: most sessions never see one
        self.acks: AckTracker[M] | None = None
        self._expires_at = 0  # the token's expiry (wall clock), 0: none
        self._warn_at: float | None = None
        self._close_at: float | None = None

    @property
    def state(self) -> State:
        return self.sm.state

    # ------------------------------------------------------------------ authentication
    def auth_remaining(self, now: float) -> float:
        """Seconds left to present a token (≤ 0: the deadline passed, close 4001)."""
        return self._auth_by - now

    @staticmethod
    def first_frame(raw: str | bytes, max_bytes: int) -> AuthStep | None:
        """What a frame sent before authentication means (None: nothing, keep waiting; an
        ``auth`` without a token)."""
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
        if size > max_bytes:
            return Close(CloseCode.MESSAGE_TOO_BIG)
        try:
            msg = p.parse_message(raw)
        except p.ProtocolError as exc:
            return Answer(exc.code, exc.message, exc.ref_id)
        if isinstance(msg, p.Auth) and not isinstance(msg, p.Refresh):
            token = msg.credential()
            return None if token is None else Token(token)
        return Answer(ErrorCode.NOT_AUTHENTICATED, "send `auth` first", msg.id)

    def opened(self) -> None:
        """Authenticated and admitted: messages flow both ways."""
        self.sm.to(State.OPEN)

    # ------------------------------------------------------------------ inbound
    def frame_in(self, size: int, now: float, max_bytes: int) -> Close | None:
        """A frame arrived (its payload is ``size`` bytes): the client is alive. A close
        when it is larger than allowed."""
        self.last_seen = now
        if size > max_bytes:
            return Close(CloseCode.MESSAGE_TOO_BIG)
        return None

    def heard(self, now: float) -> None:
        """The client answered a ping (a pong): it is alive."""
        self.last_seen = now

    def charge(self, policy: InboundBudgetPolicy, now: float, *, ping: bool) -> Verdict:
        """Charge one message to the inbound budget (``budget.py``)."""
        return self._budget.take(policy, now, ping=ping)

    def should_yield(self, policy: InboundBudgetPolicy) -> bool:
        """Count one message handled: True when the reader should let others run now."""
        return self._budget.tick(policy)

    def heartbeat_expired(self, now: float, timeout: float) -> bool:
        return now - self.last_seen > timeout

    # ------------------------------------------------------------------ the token's life
    def arm_expiry(self, expires_at: int, wall_now: float, now: float, warning: float) -> None:
        """The token expires at ``expires_at`` (wall clock; 0: never): warn ``warning``
        seconds before, close when it does."""
        self._expires_at = expires_at
        if not expires_at:
            self._warn_at = self._close_at = None
            return
        left = expires_at - wall_now
        self._warn_at = now + max(0.0, left - warning)
        self._close_at = now + max(0.0, left)

    # ------------------------------------------------------------------ acknowledged delivery
    def await_ack(self, ack_id: str, message: M, now: float) -> bool:
        """``message`` was sent and needs an ack; False when it was already waited for."""
        if self.acks is None:
            self.acks = AckTracker(self.ack_timeout, self.ack_retries)
        return self.acks.track(ack_id, message, now)

    def acked(self, ack_id: str) -> bool:
        """The client acknowledged ``ack_id``; False when the session did not wait for it."""
        return self.acks is not None and self.acks.acked(ack_id)

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> float | None:
        """When ``on_deadline`` next has something to do (None: nothing is due, ever)."""
        if self.sm.state is not State.OPEN:
            return None
        best = self.acks.next_deadline() if self.acks is not None else None
        for t in (self._warn_at, self._close_at):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def on_deadline(self, now: float) -> list[Timed[M]]:
        """What is due at ``now``, in order: the expiry warning or close, then resends."""
        if self.sm.state is not State.OPEN:
            return []
        out: list[Timed[M]] = []
        if self._warn_at is not None and self._warn_at <= now:
            self._warn_at = None
            left = (self._close_at or now) - now
            out.append(WarnExpiry(self._expires_at, max(0, int(left))))
        if self._close_at is not None and self._close_at <= now and self._warn_at is None:
            self._close_at = None
            out.append(Close(CloseCode.UNAUTHORIZED, TOKEN_EXPIRED_REASON))
            return out
        if self.acks is None:
            return out
        resend, given_up = self.acks.due(now)
        out.extend(Resend(m) for m in resend)
        if given_up:
            out.append(GaveUp(given_up))
        return out

    def closed(self) -> None:
        if self.sm.state is not State.CLOSED:
            self.sm.to(State.CLOSED)
        self.acks = None
        self._warn_at = self._close_at = None
