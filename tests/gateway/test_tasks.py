"""The gateway's task owner (tasks.py): every background task referenced until it ends,
failures logged, all cancelled on stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from roomgate_gateway.tasks import Tasks, stopping


async def test_started_tasks_are_kept_until_they_end() -> None:
    """A task is referenced while it runs and forgotten once it has ended."""
    tasks = Tasks()
    release = asyncio.Event()
    tasks.start(release.wait(), name="waiting")
    await asyncio.sleep(0)
    assert len(tasks) == 1
    release.set()
    await asyncio.sleep(0.01)
    assert len(tasks) == 0


async def test_cancel_all_cancels_every_task_and_refuses_new_work() -> None:
    """cancel_all cancels what runs, waits for it, and nothing starts afterwards."""
    tasks = Tasks()
    cancelled = []

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    tasks.start(forever(), name="a")
    tasks.start(forever(), name="b")
    await asyncio.sleep(0)
    await tasks.cancel_all(1.0)
    assert cancelled == [True, True]
    assert len(tasks) == 0
    tasks.start(forever(), name="late")
    assert len(tasks) == 0


async def test_a_loop_that_swallows_its_cancellation_still_sees_stopping() -> None:
    """A loop whose cancellation was turned into another error (redis-py may) ends at its
    next check of stopping()."""
    tasks = Tasks()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while not stopping():
            rounds += 1
            # what a client library that converts the cancellation looks like
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(60)

    tasks.start(loop(), name="loop")
    await asyncio.sleep(0)
    await tasks.cancel_all(1.0)
    assert rounds == 1
    assert len(tasks) == 0


async def test_a_failed_task_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A task that raises is logged with its name, not left as an unretrieved exception."""
    tasks = Tasks()

    async def fail() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="roomgate_gateway.tasks"):
        tasks.start(fail(), name="failing")
        await asyncio.sleep(0.01)
    assert "gateway task failing failed" in caplog.text
    assert len(tasks) == 0
