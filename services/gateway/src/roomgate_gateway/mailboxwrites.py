"""Mailbox writes of the gateway, batched per event-loop turn.

Two kinds of write come from client traffic: filing a ``requiresAck`` message of a shared
room for each user it is delivered to (so it survives a reconnect), and removing a message
from the user's mailbox when the user acks it. Neither costs a Redis call or a task of its
own: both are queued here and written together, at the end of the event-loop turn, in one
pipeline (``store.MailboxStore``: files first, in order, then the removals grouped per
user: three commands per user however many acks; on a Redis Cluster, whose pipelines
refuse scripts, the filings are concurrent script calls beside the pipeline). While one
pipeline is in flight the next turn's writes wait and go in the next, so at most one
pipeline (one pooled connection) is busy at a time.

Every write that does not reach Redis is counted in ``roomgate_gateway_drops_total``:
``mailbox_file_failed``, ``mailbox_unfile_failed``, ``mailbox_backlog`` (more than
``backlog_max`` writes waiting) — and logged once per failed pipeline.
"""

from __future__ import annotations

import asyncio
import logging

from roomgate_common.redis_adapter import Redis

from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.store import BUS_ERRORS, MailboxStore

log = logging.getLogger(__name__)


class MailboxWrites:
    def __init__(
        self,
        redis: Redis,
        metrics: GatewayMetrics,
        *,
        cap: int,
        ttl_seconds: int,
        batch_max: int,
        backlog_max: int,
    ) -> None:
        self._metrics = metrics
        self._store = MailboxStore(redis, cap=cap, ttl_ms=ttl_seconds * 1000)
        self._batch_max = batch_max
        self._backlog_max = backlog_max
        # (user id, envelope id, payload, priority) to file; user id -> envelope ids to remove
        self._files: list[tuple[str, str, str, str]] = []
        self._removals: dict[str, list[str]] = {}
        self._waiting = 0
        self._writer: asyncio.Task[None] | None = None
        self._scheduled = False

    @property
    def waiting(self) -> int:
        return self._waiting

    def file(self, user_id: str, envelope_id: str, payload: str, priority: str) -> None:
        """Keep ``payload`` in the user's mailbox until acked."""
        if self._full():
            return
        self._files.append((user_id, envelope_id, payload, priority))
        self._wake()

    def remove(self, user_id: str, envelope_id: str) -> None:
        """The user acked ``envelope_id``: take it out of the mailbox."""
        if self._full():
            return
        self._removals.setdefault(user_id, []).append(envelope_id)
        self._wake()

    async def flush(self) -> None:
        """Write everything queued (shutdown, tests)."""
        while self._writer is not None or self._waiting:
            if self._writer is None:
                self._start()
            if self._writer is not None:
                await asyncio.shield(self._writer)

    def _full(self) -> bool:
        if self._waiting >= self._backlog_max:
            self._metrics.drops.labels("mailbox_backlog").inc()
            return True
        self._waiting += 1
        return False

    def _wake(self) -> None:
        if self._writer is None and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._writer is None and self._waiting:
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                files = self._files[: self._batch_max]
                del self._files[: self._batch_max]
                room = self._batch_max - len(files)
                removals: dict[str, list[str]] = {}
                while self._removals and room > 0:
                    user, ids = next(iter(self._removals.items()))
                    take, rest = ids[:room], ids[room:]
                    removals[user] = take
                    room -= len(take)
                    if rest:
                        self._removals[user] = rest
                    else:
                        del self._removals[user]
                self._waiting -= len(files) + sum(len(v) for v in removals.values())
                await self._write(files, removals)
        finally:
            self._writer = None

    async def _write(
        self, files: list[tuple[str, str, str, str]], removals: dict[str, list[str]]
    ) -> None:
        try:
            file_results, removal_results = await self._store.write(files, removals)
        except BUS_ERRORS as exc:  # Redis down, or no pooled connection in time
            failed_files = len(files)
            failed_removals = sum(len(v) for v in removals.values())
            self._count(failed_files, failed_removals, exc)
            return
        failed_files = sum(isinstance(r, Exception) for r in file_results)
        evicted = sum(r for r in file_results if isinstance(r, int))
        if evicted:
            self._metrics.drops.labels("mailbox_full").inc(evicted)
        failed_removals = sum(
            len(removals[user])
            for user, results in zip(removals, _per_user(removal_results), strict=True)
            if any(isinstance(r, Exception) for r in results)
        )
        if failed_files or failed_removals:
            self._count(failed_files, failed_removals, None)

    def _count(self, files: int, removals: int, exc: BaseException | None) -> None:
        if files:
            self._metrics.drops.labels("mailbox_file_failed").inc(files)
        if removals:
            self._metrics.drops.labels("mailbox_unfile_failed").inc(removals)
        log.warning(
            "mailbox writes failed: %d filings, %d removals (%s)",
            files,
            removals,
            type(exc).__name__ if exc is not None else "errors in the reply",
        )


def _per_user(results: list[object]) -> list[list[object]]:
    """The removal results, three per user."""
    return [results[i : i + 3] for i in range(0, len(results), 3)]
