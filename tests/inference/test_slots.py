"""Bounded concurrency with a bounded FIFO wait queue."""

import asyncio

import pytest

from sutazai.services.inference.errors import BusyError
from sutazai.services.inference.slots import Slots
from tests.harness.waiting import wait_for

WAIT = 5.0


async def test_beyond_slots_and_queue_is_busy() -> None:
    slots = Slots("b", max_concurrency=1, max_queue=1)
    release = asyncio.Event()
    entered: list[int] = []

    async def call(n: int) -> None:
        async with slots.hold():
            entered.append(n)
            await release.wait()

    first = asyncio.create_task(call(1))
    await wait_for(lambda: slots.in_flight == 1, WAIT)
    second = asyncio.create_task(call(2))
    await wait_for(lambda: slots.queued == 1, WAIT)
    assert (slots.in_flight, slots.queued) == (1, 1)
    with pytest.raises(BusyError):
        async with slots.hold():
            pass
    release.set()
    await asyncio.gather(first, second)
    assert entered == [1, 2]
    assert (slots.in_flight, slots.queued) == (0, 0)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    slots = Slots("b", max_concurrency=1, max_queue=1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with slots.hold():
            await hold.wait()

    running = asyncio.create_task(holder())
    await wait_for(lambda: slots.in_flight == 1, WAIT)
    waiting = asyncio.create_task(holder())
    await wait_for(lambda: slots.queued == 1, WAIT)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.queued == 0
    hold.set()
    await running
    assert slots.in_flight == 0


async def test_a_cancelled_holder_frees_its_slot_for_the_next() -> None:
    slots = Slots("b", max_concurrency=1, max_queue=4)
    forever = asyncio.Event()
    got_it = asyncio.Event()

    async def first() -> None:
        async with slots.hold():
            await forever.wait()

    async def second() -> float:
        async with slots.hold() as queued:
            got_it.set()
            return queued

    running = asyncio.create_task(first())
    await wait_for(lambda: slots.in_flight == 1, WAIT)
    waiter = asyncio.create_task(second())
    await wait_for(lambda: slots.queued == 1, WAIT)
    running.cancel()
    await asyncio.wait_for(got_it.wait(), 1)
    assert await waiter >= 0
    assert slots.in_flight == 0
