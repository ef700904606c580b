"""What a handler is given: one attempt of one task."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client

from sutazai.sdk.subjects import MAX_PROGRESS_CHARS

ProgressSink = Callable[[float, str], Awaitable[None]]
"""Publishes one progress report (the agent's reporter)."""


class TaskContext:
    """One attempt of one task, as its handler sees it.

    The payload is the only data of the task an agent receives. The handler runs as its own
    asyncio task: a cancellation (``TaskControl``), the attempt's deadline or the end of a drain
    cancels it, so ``asyncio.CancelledError`` arrives at its next ``await``. A handler that
    computes without awaiting can poll :attr:`cancelled` instead.
    """

    def __init__(
        self,
        *,
        task_id: str,
        attempt: int,
        task_type: str,
        payload: dict[str, Any],
        deadline: datetime,
        agent_id: str,
        nats: Client,
        progress: ProgressSink,
        progress_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task_id = task_id
        """The task's id (a UUID)."""
        self.attempt = attempt
        """This attempt, counting from 1 (the coordinator counts attempts)."""
        self.type = task_type
        """The task's type: the capability whose handler runs it."""
        self.payload = payload
        """The input, as JSON values (every number is a ``float``, as in JSON)."""
        self.deadline = deadline
        """When the attempt must end (UTC); the SDK cancels the handler then."""
        self.agent_id = agent_id
        """``<agent name>.<instance>`` running it."""
        self.nats = nats
        """The agent's NATS connection, with its principal's permissions (e.g. to call the
        inference service)."""
        self._progress = progress
        self._interval = progress_interval
        self._clock = clock
        self._last_progress: float | None = None
        self._cancelled = asyncio.Event()

    @property
    def cancelled(self) -> bool:
        """Whether the attempt was cancelled (a ``TaskControl``, the deadline or a drain)."""
        return self._cancelled.is_set()

    def time_remaining(self) -> float:
        """Seconds until :attr:`deadline` (negative once it passed)."""
        return (self.deadline - datetime.now(UTC)).total_seconds()

    async def report_progress(self, fraction: float, message: str = "") -> None:
        """Report how far the handler got: ``fraction`` from 0 to 1, and a short note.

        Reports closer together than the agent's ``progress_interval_seconds`` are dropped
        (the latest state matters, not every step); the note keeps its first 512 characters.

        Raises:
            ValueError: ``fraction`` is not a number from 0 to 1.

        """
        if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise ValueError(f"progress must be a fraction from 0 to 1, not {fraction!r}")
        now = self._clock()
        if self._last_progress is not None and now - self._last_progress < self._interval:
            return
        self._last_progress = now
        await self._progress(fraction, message[:MAX_PROGRESS_CHARS])

    def _mark_cancelled(self) -> None:
        self._cancelled.set()
