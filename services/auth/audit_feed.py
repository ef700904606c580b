"""Wake-ups for audit-log watchers, pushed by PostgreSQL (``LISTEN sutazai_audit``).

One dedicated connection per instance (not a pooled one: a pool would hand it to other work
and reset it), as the service's own role, listens on :data:`~sutazai.runtime.audit.CHANNEL`
and fans every notification out to the subscribed watchers. A notification only says "read
again": its payload is a hint that any role allowed to connect could forge, so watchers always
re-read the table by id. Each watcher has a small bounded queue; one that falls behind loses
hints, not events, since its next read fetches everything after the last event it sent. When
the connection drops, the feed reconnects with backoff and wakes every watcher once it is back
(events may have been written while nobody listened).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

import asyncpg
import structlog

from sutazai.runtime.audit import CHANNEL

log = structlog.get_logger(__name__)

QUEUE_SIZE: Final = 64
"""Hints one watcher holds before further ones are dropped (it re-reads by id anyway)."""
RECONNECT_SECONDS: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
WAKE: Final = 0
"""The hint sent to every watcher after a reconnect: not an event id, just "read again"."""


class AuditFeed:
    """The instance's listening connection and its subscribers."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        """Listen on connections made by ``connect`` (one at a time)."""
        self._connect = connect
        self._subscribers: set[asyncio.Queue[int]] = set()
        self.connected = asyncio.Event()
        self.closed = False
        """Set when the instance drains: watchers end instead of holding the shutdown up."""

    def close(self) -> None:
        """End every watcher (they check :attr:`closed` when woken), for the host's drain."""
        self.closed = True
        self._publish(WAKE)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[int]]:
        """A queue of hints (event ids, or :data:`WAKE`) for one watcher, while in the block."""
        queue: asyncio.Queue[int] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _publish(self, hint: int) -> None:
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(hint)

    def _on_notification(self, connection: object, pid: int, channel: str, payload: object) -> None:
        try:
            hint = int(str(payload))
        except ValueError:
            hint = WAKE
        self._publish(hint)

    async def run(self) -> None:
        """Listen until cancelled, taking a fresh connection whenever the one held is lost."""
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.warning("audit_feed.listen_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        """Open a connection and listen on it until it is lost."""
        connection = await self._connect()
        try:
            lost = asyncio.Event()
            connection.add_termination_listener(functools.partial(_set, lost))
            await connection.add_listener(CHANNEL, self._on_notification)
            self.connected.set()
            self._publish(WAKE)  # what was written while nobody listened is read now
            log.info("audit_feed.listening", channel=CHANNEL)
            await lost.wait()
            log.warning("audit_feed.connection_lost")
        finally:
            self.connected.clear()
            connection.terminate()  # no goodbye needed: the server drops the LISTEN with it


def _set(event: asyncio.Event, _connection: object) -> None:
    event.set()
