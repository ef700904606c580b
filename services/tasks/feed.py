"""Wake-ups for task watchers, pushed by PostgreSQL (``LISTEN sutazai_<schema>``).

Every insert or update of a task notifies its id (a trigger of the schema), whichever instance
wrote it, so every instance's watchers hear of every change. One dedicated connection per
instance (not a pooled one: a pool would hand it to other work and reset it) listens and fans
the ids out to the subscribed watchers. A notification is only a hint: any role allowed to
connect could forge one, so watchers re-read the task and check who may see it. A watcher that
falls behind (more than :data:`MAX_HINTS` ids unread) or a lost connection turns into a
"catch up" (:attr:`Hints.resync`): the watcher re-reads what changed recently.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

import asyncpg
import structlog

from sutazai.services.tasks.domain import backoff

log = structlog.get_logger(__name__)

MAX_HINTS: Final = 1024
"""Task ids one watcher holds before it catches up by time instead."""


class Hints:
    """What one watcher has not read yet: changed task ids, or "catch up"."""

    def __init__(self, task_id: uuid.UUID | None) -> None:
        """``task_id``: hear only of that task (WatchTask); ``None`` for all."""
        self._only = task_id
        self.ids: set[uuid.UUID] = set()
        self.resync = False
        self._ready = asyncio.Event()

    def add(self, task_id: uuid.UUID | None) -> None:
        """A change of ``task_id``; ``None``: anything may have changed."""
        if task_id is not None and self._only is not None and task_id != self._only:
            return
        if task_id is None or len(self.ids) >= MAX_HINTS:
            self.resync = True
            self.ids.clear()
        elif not self.resync:
            self.ids.add(task_id)
        self._ready.set()

    async def wait(self, seconds: float) -> bool:
        """Wait for a hint; whether one came within ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def take(self) -> tuple[set[uuid.UUID], bool]:
        """The ids heard of and whether to catch up; both cleared."""
        ids, resync = self.ids, self.resync
        self.ids, self.resync = set(), False
        self._ready.clear()
        return ids, resync


class TaskFeed:
    """The instance's listening connection and its subscribers."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], schema: str) -> None:
        """Listen on connections made by ``connect`` (one at a time) for ``schema``'s tasks."""
        self._connect = connect
        self.channel = f"sutazai_{schema}"
        self._subscribers: set[Hints] = set()
        self.connected = asyncio.Event()
        self._closed = False

    def closed(self) -> bool:
        """Whether the instance drains: watchers end instead of holding the shutdown up."""
        return self._closed

    def close(self) -> None:
        """End every watcher (they check :meth:`closed` when woken), for the host's drain."""
        self._closed = True
        self._publish(None)

    @contextlib.contextmanager
    def subscribe(self, task_id: uuid.UUID | None = None) -> Iterator[Hints]:
        """Hints for one watcher (of one task, or of all), while in the block."""
        hints = Hints(task_id)
        self._subscribers.add(hints)
        try:
            yield hints
        finally:
            self._subscribers.discard(hints)

    def _publish(self, task_id: uuid.UUID | None) -> None:
        for hints in self._subscribers:
            hints.add(task_id)

    def _on_notification(self, connection: object, pid: int, channel: str, payload: object) -> None:
        try:
            task_id: uuid.UUID | None = uuid.UUID(str(payload))
        except ValueError:
            task_id = None
        self._publish(task_id)

    async def run(self) -> None:
        """Listen until cancelled, taking a fresh connection whenever the one held is lost."""
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                failures += 1
                delay = backoff(failures)
                log.warning("task_feed.listen_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        connection = await self._connect()
        try:
            lost = asyncio.Event()
            connection.add_termination_listener(functools.partial(_set, lost))
            await connection.add_listener(self.channel, self._on_notification)
            self.connected.set()
            self._publish(None)  # what changed while nobody listened is read now
            log.info("task_feed.listening", channel=self.channel)
            await lost.wait()
            log.warning("task_feed.connection_lost")
        finally:
            self.connected.clear()
            connection.terminate()


def _set(event: asyncio.Event, _connection: object) -> None:
    event.set()
