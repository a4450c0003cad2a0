"""The connection state machine (pure). Every transition is checked against the table."""

from __future__ import annotations

from enum import Enum

from roomgate_gateway.errors import GatewayError


class State(Enum):
    CONNECTING = "connecting"  # accepted, waiting for a token (query or first `auth`)
    OPEN = "open"  # authenticated: messages flow both ways
    CLOSING = "closing"  # a close frame is being sent; nothing else goes out
    CLOSED = "closed"


ALLOWED: dict[State, frozenset[State]] = {
    State.CONNECTING: frozenset({State.OPEN, State.CLOSING, State.CLOSED}),
    State.OPEN: frozenset({State.CLOSING, State.CLOSED}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


class InvalidTransition(GatewayError):
    pass


class ConnectionStateMachine:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.CONNECTING

    def to(self, new: State) -> None:
        if new not in ALLOWED[self.state]:
            raise InvalidTransition(f"{self.state.value} -> {new.value}")
        self.state = new

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN
