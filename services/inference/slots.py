"""Bounded concurrency per backend with a bounded, first-come first-served wait queue.

Unlike the original's in-memory queues, nothing waits without bound: a call beyond
``max_concurrency`` running and ``max_queue`` waiting is refused at once (RESOURCE_EXHAUSTED),
and a waiting call that is cancelled leaves the queue (or passes on a slot it was just given).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sutazai.services.inference.errors import BusyError

RETRY_AFTER_SECONDS = 1.0


class Slots:
    """The running and waiting calls of one backend. Used from the event loop only."""

    def __init__(
        self,
        backend: str,
        *,
        max_concurrency: int,
        max_queue: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._max_concurrency = max_concurrency
        self._max_queue = max_queue
        self._clock = clock
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def max_concurrency(self) -> int:
        """Calls that run at once."""
        return self._max_concurrency

    @property
    def max_queue(self) -> int:
        """Calls that may wait."""
        return self._max_queue

    @property
    def in_flight(self) -> int:
        """Calls holding a slot now."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Calls waiting now."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[float]:
        """Hold a slot for the block; yields the seconds spent waiting for it.

        Raises:
            BusyError: every slot is taken and the queue is full.
        """
        started = self._clock()
        await self._take()
        try:
            yield self._clock() - started
        finally:
            self._give_back()

    async def _take(self) -> None:
        if self._in_flight < self._max_concurrency and not self.queued:
            self._in_flight += 1
            return
        if self.queued >= self._max_queue:
            raise BusyError(self._backend, RETRY_AFTER_SECONDS)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give_back()  # handed a slot just as the caller left: pass it on
            else:
                # It may have been dropped already by a hand-over that skipped it.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; in_flight stays
                return
        self._in_flight -= 1
