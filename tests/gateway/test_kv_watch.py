"""``watch_entries`` (runtime/kv_watch.py, under the registry mirror): the end of a KV bucket's
initial values is never announced too early."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from sutazai.runtime.kv_watch import DELETE_OPERATIONS, watch_entries


@dataclass
class _Entry:
    key: str
    revision: int
    value: bytes = b"v"
    operation: str | None = None


class _Watcher:
    """nats-py's KeyWatcher as it behaves in the race: its marker before pushed entries."""

    def __init__(self, items: list[_Entry | None], *, consumer_seq: int, stream_seq: int) -> None:
        self._items = items
        self.stopped = False
        delivered = SimpleNamespace(consumer_seq=consumer_seq, stream_seq=stream_seq)

        async def consumer_info() -> SimpleNamespace:
            return SimpleNamespace(delivered=delivered, num_pending=0)

        self._sub = SimpleNamespace(consumer_info=consumer_info)

    def __aiter__(self) -> AsyncIterator[_Entry | None]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[_Entry | None]:
        for item in self._items:
            yield item

    async def stop(self) -> None:
        self.stopped = True


class _Bucket:
    def __init__(self, watcher: _Watcher) -> None:
        self.watcher = watcher

    async def watch(self, keys: str) -> _Watcher:
        return self.watcher


async def _collect(watcher: _Watcher) -> list[str | None]:
    seen: list[str | None] = []
    async for entry in watch_entries(cast("KeyValue", _Bucket(watcher))):
        seen.append(None if entry is None else entry.key)
    return seen


async def test_a_marker_ahead_of_pushed_entries_is_held_back() -> None:
    # The server had pushed stream sequences 4 and 7 when the watch asked; nats-py, not having
    # handled them yet, put its marker first.
    watcher = _Watcher(
        [None, _Entry("a", 4), _Entry("b", 7), _Entry("c", 9)], consumer_seq=2, stream_seq=7
    )

    assert await _collect(watcher) == ["a", "b", None, "c"]
    assert watcher.stopped


async def test_an_empty_bucket_ends_its_initial_values_at_once() -> None:
    watcher = _Watcher([None, _Entry("late", 3)], consumer_seq=0, stream_seq=0)

    assert await _collect(watcher) == [None, "late"]


async def test_a_timely_marker_passes_once() -> None:
    watcher = _Watcher(
        [_Entry("a", 4), _Entry("b", 7), None, _Entry("c", 9), None], consumer_seq=2, stream_seq=7
    )

    assert await _collect(watcher) == ["a", "b", None, "c"]


@pytest.fixture
async def bucket(nats_client: Client) -> AsyncIterator[KeyValue]:
    js = nats_client.jetstream()
    name = f"kvwatch_{uuid.uuid4().hex[:8]}"
    kv = await js.create_key_value(KeyValueConfig(bucket=name, history=1))
    try:
        yield kv
    finally:
        await js.delete_key_value(name)


async def test_current_entries_then_the_marker_then_changes(bucket: KeyValue) -> None:
    for n in range(50):
        await bucket.put(f"k.{n}", b"x")
    await bucket.delete("k.0")
    entries = watch_entries(bucket, "k.>")

    initial: dict[str, Any] = {}
    async for entry in entries:
        if entry is None:
            break
        initial[entry.key] = entry.operation
    await bucket.put("k.new", b"y")
    live = await asyncio.wait_for(anext(entries), timeout=10)
    await entries.aclose()

    assert len(initial) == 50
    assert initial["k.0"] in DELETE_OPERATIONS
    assert all(initial[f"k.{n}"] not in DELETE_OPERATIONS for n in range(1, 50))
    assert live is not None
    assert live.key == "k.new"


async def test_listing_right_after_a_put_sees_it_every_time(bucket: KeyValue) -> None:
    # The race the marker fix is for: a watch opened right after a write, on a busy loop.
    async def busy() -> None:
        while True:
            sum(range(20_000))
            await asyncio.sleep(0)

    spinner = asyncio.create_task(busy())
    try:
        for n in range(30):
            await bucket.put(f"r.{n}", b"x")
            keys = set()
            entries = watch_entries(bucket, "r.>")
            async with contextlib.aclosing(entries):
                async for entry in entries:
                    if entry is None:
                        break
                    keys.add(entry.key)
            assert keys == {f"r.{i}" for i in range(n + 1)}
    finally:
        spinner.cancel()
