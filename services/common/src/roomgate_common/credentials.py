"""Verified bearer tokens, kept so that the next call with the same token skips auth.

The services that verify every call's token with auth (the gateway's publish APIs, the
escalation service's callers) keep what auth answered for a token until the first of: the
token's own expiry, ``ttl`` seconds after it was verified, a revocation that covers it
(``revoke``: the gateway calls it for every event on ``keys.REVOCATIONS_CHANNEL``), or
``clear`` (the gateway's Redis subscriber reconnected: events may have been missed). Only
accepted tokens are kept; a refusal is asked again each time.

Entries are keyed by a digest of the token, never the token itself; at most ``size`` are
kept (the oldest goes first). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from roomgate_common.revocation import Revocation


class Verified(Protocol):
    """What the cache needs of a principal (``clients.Principal`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def token_id(self) -> str: ...
    @property
    def issued_at(self) -> int: ...
    @property
    def expires_at(self) -> int: ...


P = TypeVar("P", bound=Verified)


class CredentialCache(Generic[P]):
    __slots__ = ("_entries", "clock", "kind_of", "size", "ttl")

    def __init__(
        self,
        ttl: float,
        size: int,
        kind_of: Callable[[P], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.kind_of = kind_of
        self.clock = clock
        self._entries: dict[bytes, tuple[float, P]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> P | None:
        """The principal auth verified ``token`` as, while that still holds."""
        if not self._entries:
            return None
        key = _digest(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, token: str, principal: P) -> None:
        """Keep what auth answered for ``token`` (nothing when the cache is off)."""
        if self.ttl <= 0:
            return
        now = self.clock()
        until = now + self.ttl
        if principal.expires_at:
            until = min(until, float(principal.expires_at))
        if until <= now:
            return
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[_digest(token)] = (until, principal)

    def revoke(self, revocation: Revocation) -> int:
        """Forget the tokens ``revocation`` covers; how many."""
        covered = [
            key
            for key, (_, p) in self._entries.items()
            if revocation.revokes(self.kind_of(p), p.id, p.token_id, p.issued_at)
        ]
        for key in covered:
            del self._entries[key]
        return len(covered)

    def clear(self) -> None:
        self._entries.clear()


def _digest(token: str) -> bytes:
    return hashlib.blake2b(token.encode(), digest_size=16).digest()
