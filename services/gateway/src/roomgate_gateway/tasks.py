"""The gateway's background tasks, owned: every task a gateway part starts (the presence
and heartbeat loops, the work a control message asks for) is started here, referenced
until it ends, logged when it fails, and cancelled on stop. No part calls ``create_task``
itself and forgets the task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


def stopping() -> bool:
    """The current task was asked to stop. A loop checks it too, not only the cancellation:
    redis-py may turn a cancellation inside a command into a connection error, which a
    loop survives by design."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``work`` in a task of its own; after ``cancel_all`` nothing new starts."""
        if self._closed:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("gateway task %s failed", task.get_name(), exc_info=task.exception())

    async def cancel_all(self, grace: float) -> None:
        """Cancel every task and wait for them, at most ``grace`` seconds."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
