"""Watchers get the latest state, never a backlog, and a limit on how many there are."""

from __future__ import annotations

import asyncio

import pytest

from sutazai.runtime.stream_slots import StreamSlots
from sutazai.services.system.domain.fanout import Broadcast, Mailbox


async def test_a_slow_reader_gets_only_the_newest_value() -> None:
    mailbox: Mailbox[int] = Mailbox()
    for value in range(1000):
        mailbox.put(value)

    assert await mailbox.get() == 999
    mailbox.put(-1)  # nothing older is queued behind the newest value
    assert await mailbox.get() == -1


async def test_a_reader_waits_for_the_next_value() -> None:
    mailbox: Mailbox[str] = Mailbox()
    reader = asyncio.create_task(mailbox.get())
    done, _ = await asyncio.wait({reader}, timeout=0.05)
    assert not done, "nothing was put: the reader must still be waiting"

    mailbox.put("round 2")

    assert await asyncio.wait_for(reader, 1) == "round 2"


async def test_closing_delivers_what_is_unread_then_ends_the_iteration() -> None:
    mailbox: Mailbox[int] = Mailbox()
    mailbox.put(1)
    mailbox.close()

    assert [value async for value in mailbox] == [1]
    assert await mailbox.get() is None


async def test_subscribers_get_the_latest_value_at_once_then_each_publication() -> None:
    broadcast: Broadcast[int] = Broadcast()
    broadcast.publish(1)

    with broadcast.subscribe() as first, broadcast.subscribe(replay=False) as second:
        assert broadcast.subscribers == 2
        assert await first.get() == 1
        broadcast.publish(2)
        assert await first.get() == 2
        assert await second.get() == 2

    assert broadcast.subscribers == 0
    assert broadcast.latest == 2


async def test_close_ends_current_and_later_subscriptions() -> None:
    broadcast: Broadcast[int] = Broadcast()
    with broadcast.subscribe() as current:
        reader = asyncio.create_task(current.get())
        done, _ = await asyncio.wait({reader}, timeout=0.05)
        assert not done, "nothing was published: the reader must still be waiting"
        broadcast.close()
        assert await asyncio.wait_for(reader, 1) is None
    with broadcast.subscribe() as later:
        assert [value async for value in later] == []


def test_stream_slots_refuse_past_the_instance_limit_and_free_on_give_back() -> None:
    slots = StreamSlots(2, per_caller=2)

    assert slots.take("user:a")
    assert slots.take("user:b")
    assert not slots.take("user:c")
    slots.give_back("user:a")
    assert slots.take("user:c")
    assert slots.open == 2


def test_one_caller_cannot_take_every_stream() -> None:
    slots = StreamSlots(10, per_caller=2)

    assert slots.take("peer:127.0.0.1")
    assert slots.take("peer:127.0.0.1")
    assert not slots.take("peer:127.0.0.1")
    assert slots.take("user:a")
    slots.give_back("peer:127.0.0.1")
    assert slots.take("peer:127.0.0.1")


def test_stream_slots_need_positive_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        StreamSlots(0, per_caller=1)
    with pytest.raises(ValueError, match="positive"):
        StreamSlots(1, per_caller=0)
