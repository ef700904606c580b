"""Pulling from NATS in a loop: a cancellation is honoured even when it comes as a timeout."""

from __future__ import annotations

import asyncio

from sutazai.runtime.messaging import end_if_cancelled


async def test_a_cancellation_turned_into_a_timeout_still_ends_the_loop() -> None:
    pulls = 0

    async def pull() -> None:
        # What nats-py's fetch sometimes does under Python 3.11 when cancelled as it times out
        # (once here, so that the test ends whatever the code under test does).
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if pulls == 1:
                raise TimeoutError from None
            raise

    async def loop() -> None:
        nonlocal pulls
        while True:
            pulls += 1
            try:
                await pull()
            except TimeoutError:
                end_if_cancelled()
                continue

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=2)

    assert done, "the loop pulled on after its cancellation"
    assert task.cancelled()
    assert pulls == 1


async def test_a_timeout_alone_goes_on() -> None:
    try:
        raise TimeoutError
    except TimeoutError:
        end_if_cancelled()  # nothing asked this task to stop
