"""Group commit: calls that arrive while a write is in flight share the next one.

A :class:`Batcher` runs one flush at a time. The first call starts a flush of itself alone; calls
arriving meanwhile wait and then go together in the next flush (at most ``limit`` each). One
caller alone waits exactly as long as before; many callers share a transaction, a commit and its
round trips instead of queueing for one each. A caller that stops waiting (its RPC cancelled)
does not stop its item: it is written with the others, as it would have been had the caller
waited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

Flush = Callable[[list[In]], Awaitable[Sequence[Out | BaseException]]]
"""Writes a batch; one result (or the error of that item alone) per item, in order."""


class Batcher(Generic[In, Out]):
    """Feeds items to ``flush`` in batches of up to ``limit``, one flush at a time."""

    def __init__(self, flush: Flush[In, Out], *, limit: int) -> None:
        self._flush = flush
        self._limit = limit
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        """Write ``item`` with whatever else is waiting; its result.

        Raises:
            BaseException: the item's own error, or the whole flush's.

        """
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._limit]
                del self._waiting[: self._limit]
                try:
                    results: Sequence[Out | BaseException] = await self._flush(
                        [item for item, _ in batch]
                    )
                except Exception as exc:  # every item of the batch gets the flush's error
                    results = [exc] * len(batch)
                except BaseException:  # cancelled (the service stops): so are its callers
                    _cancel(batch)
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller stopped waiting
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = None
            _cancel(self._waiting)  # left only when the drain itself was cancelled
            self._waiting.clear()


def _cancel(batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
    for _, future in batch:
        if not future.done():
            future.cancel()
