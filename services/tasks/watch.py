"""``WatchTask`` and ``WatchTasks``: tasks as they change, pushed by :class:`~.feed.TaskFeed`.

A watcher subscribes to the feed before it reads its starting point, so a change in between is
not missed; then it re-reads what the feed names (or, after missed hints, what changed lately)
and sends what it has not sent in that version. With nothing to send for
:data:`KEEPALIVE_SECONDS` it sends a keep-alive (WatchTask: the task again; WatchTasks: a
message without a task), so the edge's idle timeout never ends a quiet stream. Streams end when
the instance drains (the client reconnects to another one); WatchTask also after a final state.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg

from sutazai.runtime.faults import not_found, resource_exhausted, unavailable
from sutazai.runtime.stream_slots import StreamSlots
from sutazai.services.tasks.domain import WatchFilter
from sutazai.services.tasks.feed import TaskFeed
from sutazai.services.tasks.metrics import TaskMetrics
from sutazai.services.tasks.records import StoredAttempt, StoredTask
from sutazai.services.tasks.store import TaskStore

KEEPALIVE_SECONDS: Final = 30.0
RETRY_SECONDS: Final = 5.0
CATCH_UP_LIMIT: Final = 500
"""Tasks re-read at most when a watcher catches up after missed hints."""
CATCH_UP_MARGIN: Final = timedelta(seconds=5)
"""How far back a catch-up looks before the previous one (commit order vs clock order)."""
REMEMBERED: Final = 10_000
"""Tasks whose last sent version one WatchTasks stream remembers."""


class Watches:
    """Serves every watch stream of one instance."""

    def __init__(
        self,
        store: TaskStore,
        feed: TaskFeed,
        slots: StreamSlots,
        metrics: TaskMetrics,
        *,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._store = store
        self._feed = feed
        self._slots = slots
        self._metrics = metrics
        self._keepalive = keepalive_seconds

    @contextlib.contextmanager
    def slot(self, caller: str) -> Iterator[None]:
        """Hold one of the instance's streams for ``caller`` for the block, or refuse.

        Raises:
            RpcStatusError: RESOURCE_EXHAUSTED when the caller's or the instance's are taken.

        """
        if not self._slots.take(caller):
            raise resource_exhausted(
                f"too many streams: at most {self._slots.per_caller} per caller and "
                f"{self._slots.limit} per instance",
                RETRY_SECONDS,
            )
        self._metrics.watches.inc()
        try:
            yield
        finally:
            self._metrics.watches.dec()
            self._slots.give_back(caller)

    async def task(
        self, task_id: uuid.UUID, *, owner_id: str | None
    ) -> AsyncIterator[tuple[StoredTask, list[StoredAttempt]]]:
        """One task now, then at each change, until it is final (or the instance drains).

        Raises:
            RpcStatusError: NOT_FOUND (also another owner's task), UNAVAILABLE.

        """
        with self._feed.subscribe(task_id) as hints:
            with _readable():
                task = await self._store.get(task_id)
                if task is None or (owner_id is not None and task.owner_id != owner_id):
                    raise not_found("task", str(task_id))
                attempts = await self._store.attempts(task_id)
            yield task, attempts
            version = task.version
            while not task.state.final and not self._feed.closed():
                heard = await hints.wait(self._keepalive)
                if self._feed.closed():
                    return
                hints.take()
                with _readable():
                    fresh = await self._store.get(task_id)
                    if fresh is None:
                        return
                    task = fresh
                    if task.version != version:
                        attempts = await self._store.attempts(task_id)
                if task.version != version or not heard:
                    version = task.version
                    yield task, attempts

    async def tasks(
        self, where: WatchFilter, *, snapshot_size: int
    ) -> AsyncIterator[tuple[StoredTask, bool] | None]:
        """``(task, True)`` for the newest matching tasks, then ``(task, False)`` per change.

        ``None`` is a keep-alive (also sent at once when the snapshot is empty). A task that
        stops matching (a state filter) is sent once more, so the caller sees it leave.

        Raises:
            RpcStatusError: UNAVAILABLE when PostgreSQL cannot be read.

        """
        sent: OrderedDict[uuid.UUID, int] = OrderedDict()

        def remember(task: StoredTask) -> None:
            sent[task.task_id] = task.version
            sent.move_to_end(task.task_id)
            while len(sent) > REMEMBERED:
                sent.popitem(last=False)

        with self._feed.subscribe() as hints:
            caught_up = datetime.now(UTC)
            with _readable():
                snapshot = await self._store.page(
                    owner_id=where.owner_id,
                    states=sorted(where.states),
                    task_type=where.type,
                    agent_id="",
                    after=None,
                    limit=snapshot_size,
                )
            for task in snapshot:
                remember(task)
                yield task, True
            if not snapshot:
                # Nothing matches yet: a keep-alive at once, so the caller (through Envoy, the
                # HTTP status line) learns that the stream was accepted without waiting for a
                # change or for the first periodic keep-alive.
                yield None
            while not self._feed.closed():
                if not await hints.wait(self._keepalive):
                    yield None
                    continue
                if self._feed.closed():
                    return
                ids, resync = hints.take()
                with _readable():
                    if resync:
                        now = datetime.now(UTC)
                        changed = await self._store.changed_since(
                            caught_up - CATCH_UP_MARGIN,
                            owner_id=where.owner_id,
                            limit=CATCH_UP_LIMIT,
                        )
                        caught_up = now
                    else:
                        changed = await self._store.many_matching(
                            sorted(ids),
                            owner_id=where.owner_id,
                            states=sorted(where.states),
                            task_type=where.type,
                            also=[i for i in ids if i in sent],  # to see them leave
                        )
                for task in sorted(changed, key=lambda t: (t.updated_at, t.task_id)):
                    if not where.visible(task.owner_id) or sent.get(task.task_id) == task.version:
                        continue
                    if where.matches(task.owner_id, task.state, task.type) or task.task_id in sent:
                        remember(task)
                        yield task, False


@contextlib.contextmanager
def _readable() -> Iterator[None]:
    """Turn a database failure into UNAVAILABLE (the caller may retry), not INTERNAL."""
    try:
        yield
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise unavailable("the task record cannot be read now", RETRY_SECONDS) from exc
