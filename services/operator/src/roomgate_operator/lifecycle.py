"""The operator's shutdown, as seen by every handler: a stop flag and the handlers in flight.

kopf gives each resource object's handlers a *shallow copy* of the operator memo
(``copy.copy`` in kopf/_core/reactor/inventory.py), taken when kopf first sees the object.
A key set on the operator memo later (by cleanup) is invisible to those copies, and an
object created lazily through a copy exists once per object, not once per operator. So
one ``Lifecycle`` is put on the operator memo by startup, before any resource handler
runs: every copy then refers to the same instance, and cleanup can stop it and wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)


class Lifecycle:
    """Running until ``stop``; counts the handlers doing work so ``stop`` can wait for them."""

    def __init__(self) -> None:
        self._stopping = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @asynccontextmanager
    async def work(self) -> AsyncIterator[bool]:
        """One handler's work: yields True (counted in flight until the block exits), or
        False once stopping (not counted: the handler must return without doing anything,
        the clients may be closed)."""
        if self._stopping:
            yield False
            return
        self._in_flight += 1
        self._idle.clear()
        try:
            yield True
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def stop(self, grace: float) -> bool:
        """Refuse new work and wait until none is in flight, at most ``grace`` seconds.
        True when everything finished; False (logged) when the grace ran out first."""
        self._stopping = True
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            log.warning(
                "%d handler(s) still running after %.1f s of shutdown grace; "
                "closing the clients under them",
                self._in_flight,
                grace,
            )
            return False
        return True
