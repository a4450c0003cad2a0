"""What ``/readyz`` says of a dependency (pure; the clock is injected).

A readiness probe that fails while a dependency is merely slow takes a busy gateway out of
service: in a reconnect storm every gateway's auth health check queues behind thousands of
tokens, the load balancer's checks time out on all of them at once, and the clients that
remain get 503s and come back again (the storm feeds itself, docs/benchmarks.md). So a
check that *answered* decides at once — SERVING / PONG is ready, a refusal or an error is
not — while a check that only ran out of time (``ready_check_timeout``) keeps the
dependency's last answer for ``ready_grace`` seconds. A dependency that hangs for longer is
reported not ready.
"""

from __future__ import annotations

from collections.abc import Callable


class LastAnswer:
    """One dependency's readiness from its checks' answers and, for a check that timed out,
    the time of its last good answer (any call that got one counts, not only checks)."""

    __slots__ = ("_clock", "_grace", "_ok_at")

    def __init__(self, *, grace: float, clock: Callable[[], float]) -> None:
        self._grace = grace
        self._clock = clock
        self._ok_at: float | None = None

    def answered(self, ok: bool) -> bool:
        """A check (or a call) got an answer: ``ok`` is the dependency's readiness."""
        self._ok_at = self._clock() if ok else None
        return ok

    def timed_out(self) -> bool:
        """A check got no answer in time: ready if the last good answer is recent."""
        return self._ok_at is not None and self._clock() - self._ok_at <= self._grace
