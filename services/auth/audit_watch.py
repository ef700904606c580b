"""``WatchAuditEvents``: the audit log as it is written, for admins.

Each watcher keeps a cursor (:class:`~sutazai.services.auth.domain.WatchCursor`) and reads the
table itself, by id, with its own filters, whenever :class:`~.audit_feed.AuditFeed` says that
something was written, and at least every :data:`KEEPALIVE_SECONDS` (when it also sends an
empty message, so the edge keeps the stream open). A lost hint therefore delays an event by at
most that long; it never loses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Final

import asyncpg

from sutazai.runtime.audit import AuditEvent, AuditLog
from sutazai.runtime.faults import invalid_argument, resource_exhausted, unavailable
from sutazai.services.auth.audit_feed import AuditFeed
from sutazai.services.auth.domain import WatchCursor
from sutazai.services.auth.trail import MAX_FILTER

MAX_WATCHERS: Final = 32
"""Concurrent watches one instance serves; more get RESOURCE_EXHAUSTED."""
REPLAY_LIMIT: Final = 1000
"""Older events sent at most for ``after_event_id`` (the newest of them)."""
READ_LIMIT: Final = 200
"""Events read (and sent in one message) at a time."""
REPLAY_BATCH: Final = 100
KEEPALIVE_SECONDS: Final = 30.0


class AuditWatch:
    """Serves every watcher of one instance."""

    def __init__(
        self,
        audit: AuditLog,
        feed: AuditFeed,
        *,
        limit: int = MAX_WATCHERS,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._audit = audit
        self._feed = feed
        self._limit = limit
        self._keepalive = keepalive_seconds
        self._active = 0

    async def watch(
        self, *, after_event_id: int, actor: str, action: str
    ) -> AsyncIterator[list[AuditEvent]]:
        """Batches of events, oldest first; the first at once (maybe empty), then as written.

        Raises:
            RpcStatusError: INVALID_ARGUMENT naming each bad field, RESOURCE_EXHAUSTED when
                :data:`MAX_WATCHERS` watch already, UNAVAILABLE when the audit log cannot be
                read.

        """
        violations = {}
        if after_event_id < 0:
            violations["after_event_id"] = "must not be negative"
        for field, value in (("actor", actor), ("action", action)):
            if len(value) > MAX_FILTER:
                violations[field] = f"must be at most {MAX_FILTER} characters"
        if violations:
            raise invalid_argument(violations)
        if self._active >= self._limit:
            raise resource_exhausted(
                f"at most {self._limit} audit watches at a time", retry_after_seconds=5
            )
        self._active += 1
        try:
            # Subscribed before the starting point is read: an event written in between is
            # announced to this watcher and read.
            with self._feed.subscribe() as hints:
                async for batch in self._follow(hints, after_event_id, actor, action):
                    yield batch
        finally:
            self._active -= 1

    async def _follow(
        self, hints: asyncio.Queue[int], after_event_id: int, actor: str, action: str
    ) -> AsyncIterator[list[AuditEvent]]:
        with _readable():
            if after_event_id:
                replay = await self._audit.newest_after(
                    after_event_id, limit=REPLAY_LIMIT, actor=actor, action=action
                )
                # More than the limit: the oldest are skipped, and not looked for later either.
                start = replay[0].event_id - 1 if len(replay) == REPLAY_LIMIT else after_event_id
            else:
                replay, start = [], await self._audit.last_id()
        cursor = WatchCursor(start)
        cursor.advance([e.event_id for e in replay])
        for i in range(0, max(len(replay), 1), REPLAY_BATCH):
            yield replay[i : i + REPLAY_BATCH]
        last_sent = time.monotonic()
        while not self._feed.closed:
            with _readable():
                events = await self._audit.after(
                    cursor.last, limit=READ_LIMIT, actor=actor, action=action, also=cursor.gaps()
                )
            fresh = set(cursor.advance([e.event_id for e in events]))
            batch = [e for e in events if e.event_id in fresh]
            if batch:
                last_sent = time.monotonic()
                yield batch
            if len(events) == READ_LIMIT:
                continue  # more are waiting
            wait = self._keepalive - (time.monotonic() - last_sent)
            try:
                async with asyncio.timeout(max(wait, 0)):
                    await hints.get()
            except TimeoutError:
                last_sent = time.monotonic()
                yield []
            while not hints.empty():  # one read answers every hint received so far
                hints.get_nowait()
            # Ending here (the instance drains) lets the client reconnect to another instance.


@contextlib.contextmanager
def _readable() -> Iterator[None]:
    """Turn a database failure into UNAVAILABLE (the caller may retry), not INTERNAL."""
    try:
        yield
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise unavailable("the audit log cannot be read now", retry_after_seconds=1) from exc
