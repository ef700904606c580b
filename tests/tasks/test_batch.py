"""Group commit (services/tasks/batch.py): who goes together, and what each caller gets."""

from __future__ import annotations

import asyncio

import pytest

from sutazai.services.tasks.batch import Batcher


class Recorder:
    """A flush that records its batches and waits for a gate before answering."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def flush(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        self.entered.set()
        await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_caller_alone_is_written_alone_at_once() -> None:
    recorder = Recorder()
    recorder.gate.set()
    batcher = Batcher(recorder.flush, limit=10)
    assert await batcher.submit(2) == 20
    assert recorder.batches == [[2]]


async def test_callers_arriving_during_a_flush_share_the_next_and_get_their_own_results() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, limit=3)
    first = asyncio.create_task(batcher.submit(0))
    await recorder.entered.wait()
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 3, 4, 6)]
    await asyncio.sleep(0)  # let them queue behind the flush in flight
    recorder.gate.set()
    assert await first == 0
    assert await rest[0] == 20
    with pytest.raises(ValueError, match="odd 3"):
        await rest[1]
    assert [await rest[2], await rest[3]] == [40, 60]
    assert recorder.batches == [[0], [2, 3, 4], [6]], "at most `limit` per flush, in order"


async def test_a_failed_flush_fails_every_caller_of_its_batch_only() -> None:
    calls = 0

    async def flush(items: list[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        return list(items)

    batcher = Batcher(flush, limit=10)
    with pytest.raises(ConnectionError):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2


async def test_a_caller_that_stops_waiting_leaves_its_item_in_the_batch() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, limit=10)
    first = asyncio.create_task(batcher.submit(0))
    await recorder.entered.wait()
    gone = asyncio.create_task(batcher.submit(2))
    stays = asyncio.create_task(batcher.submit(4))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.gate.set()
    assert await first == 0
    assert await stays == 40
    assert recorder.batches == [[0], [2, 4]]
