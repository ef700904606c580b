"""Watching a NATS KV bucket with a trustworthy end of the initial values.

nats-py's ``KeyValue.watch`` yields the current entries, then ``None``, then live changes. Its
``None`` can come too early: when the watch starts it compares the consumer's pending count
with the entries *it has processed*, so entries the server has already pushed but the client
has not yet handled (a busy event loop) arrive after the marker. A reader that stops at the
marker then sees an empty or partial bucket (the gateway once synced Envoy with no instances
right after a registration; nats-py 2.16).

:func:`watch_entries` asks the server how far it has delivered once the watch exists, and
holds the marker back until every entry up to that stream sequence has been yielded. Every
KV watch of the mesh goes through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import nats.errors
from nats.js.kv import KeyValue

DELETE_OPERATIONS = frozenset({"DEL", "PURGE"})
"""``Entry.operation`` of a deleted, purged or expired key (nats-py maps limit markers here)."""


async def watch_entries(kv: KeyValue, keys: str = ">") -> AsyncGenerator[KeyValue.Entry | None]:
    """Yield the current entries of ``keys``, then one ``None``, then every change, forever.

    Deletions are yielded too (``operation`` in :data:`DELETE_OPERATIONS`); callers that want
    only live values filter them. The iterator ends if the watch is stopped under it.

    Raises:
        nats.errors.Error: the watch could not be created (NATS unreachable, no permission).

    """
    watcher = await kv.watch(keys)
    # nats-py offers no public accessor for the watch's consumer.
    subscription = watcher._sub
    if subscription is None:
        raise nats.errors.Error("the KV watch has no subscription")
    try:
        # The server's count, not nats-py's: everything it pushed before this answer belongs
        # to the initial values (and perhaps a few changes made meanwhile, which is harmless).
        info = await subscription.consumer_info()
        delivered = info.delivered
        pushed = delivered is not None and bool(delivered.consumer_seq)
        boundary = (delivered.stream_seq or 0) if pushed and delivered is not None else 0
        seen = 0
        marker_due = False
        marked = False
        async for entry in watcher:
            if entry is None:
                if not marked and seen >= boundary:
                    marked = True
                    yield None
                else:
                    marker_due = not marked
                continue
            seen = max(seen, entry.revision or 0)
            yield entry
            if marker_due and seen >= boundary:
                marker_due = False
                marked = True
                yield None
    finally:
        with contextlib.suppress(nats.errors.Error, AttributeError):
            await watcher.stop()  # type: ignore[no-untyped-call]
