"""Wait for a condition with a deadline: the only way this code base synchronises on time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float,  # noqa: ASYNC109  (a deadline for polling, not for one awaited call)
    interval: float = 0.05,
    *,
    message: str = "condition",
) -> None:
    """Poll ``predicate`` (sync or async) until it returns true.

    Raises:
        TimeoutError: ``predicate`` was still false after ``timeout`` seconds; the message names
            ``message``.

    """
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{message} not met within {timeout:.1f}s")
        await asyncio.sleep(min(interval, remaining))
