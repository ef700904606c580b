"""What the task service does, behind its handlers: create, cancel, re-queue, read.

Each change is stored with its outbox rows in one transaction (:mod:`.store`), then published
at once (:class:`~.outbox.Outbox`): the caller gets the task as JetStream's acknowledgement
left it (QUEUED), or PENDING when NATS is away, in which case the relay publishes it later.
Ownership is decided here: ``owner_id`` is the caller's id, or ``None`` for an operator acting
on every user's tasks.

Creates without an idempotency key that arrive while others are being stored go together in
the next transaction (:mod:`.batch`, group commit), and so do the marks of published
dispatches (:class:`~.outbox.Outbox`): under load one commit serves many tasks.
"""

from __future__ import annotations

import uuid

from sutazai.runtime.settings import TaskSettings
from sutazai.services.tasks.batch import Batcher
from sutazai.services.tasks.errors import QueueFullError
from sutazai.services.tasks.messages import DISPATCH, cancel_report, cancelled_error
from sutazai.services.tasks.metrics import TaskMetrics
from sutazai.services.tasks.outbox import Outbox
from sutazai.services.tasks.records import Changed, NewTask, StoredAttempt, StoredTask
from sutazai.services.tasks.store import TaskStore

CREATE_BATCH = 100
"""Creates stored in one transaction at most."""


class TaskLedger:
    """The task record and its dispatch."""

    def __init__(
        self, store: TaskStore, outbox: Outbox, settings: TaskSettings, metrics: TaskMetrics
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._settings = settings
        self._metrics = metrics
        # Creates without an idempotency key that arrive together share one transaction.
        self._creates: Batcher[NewTask, Changed] = Batcher(self._create_many, limit=CREATE_BATCH)

    @property
    def store(self) -> TaskStore:
        """The store (reads)."""
        return self._store

    async def create(self, new: NewTask) -> tuple[StoredTask, bool]:
        """Store and queue a task; ``(task, created)`` (``False``: the idempotency key's task).

        Raises:
            QueueFullError: the queue bound is reached.

        """
        try:
            if new.idempotency_key:
                changed, created = await self._store.create(
                    new, queue_bound=self._settings.queue_bound, dispatch=DISPATCH
                )
            else:
                changed, created = await self._creates.submit(new), True
        except QueueFullError:
            self._metrics.queue_full.inc()
            raise
        if not created:
            self._metrics.idempotent_repeats.inc()
            return changed.task, False
        self._metrics.created.labels(str(new.priority)).inc()
        queued = await self._outbox.send(changed.outbox)
        return queued or changed.task, True

    async def _create_many(self, news: list[NewTask]) -> list[Changed | QueueFullError]:
        return await self._store.create_many(
            news, queue_bound=self._settings.queue_bound, dispatch=DISPATCH
        )

    async def get(
        self, task_id: uuid.UUID, *, owner_id: str | None
    ) -> tuple[StoredTask, list[StoredAttempt]] | None:
        """A task with its attempts, if it exists and ``owner_id`` (unless ``None``) owns it."""
        task = await self._store.get(task_id)
        if task is None or (owner_id is not None and task.owner_id != owner_id):
            return None
        return task, await self._store.attempts(task_id)

    async def cancel(
        self, task_id: uuid.UUID, *, owner_id: str | None, reason: str
    ) -> StoredTask | None:
        """Record CANCELLED and report ``cancel_requested``; ``None`` if no such task (of theirs).

        Raises:
            TaskFinishedError: the task already finished.

        """
        changed = await self._store.cancel(
            task_id, owner_id=owner_id, error=cancelled_error(reason), report=cancel_report(reason)
        )
        if changed is None:
            return None
        self._metrics.finished.labels(changed.task.state.value).inc()
        await self._outbox.send(changed.outbox)
        return changed.task

    async def requeue(self, task_id: uuid.UUID) -> StoredTask | None:
        """Queue a dead letter again with a fresh allowance of attempts; ``None`` if missing.

        Raises:
            NotDeadLetteredError: the task is not a dead letter.

        """
        changed = await self._store.requeue(task_id, dispatch=DISPATCH)
        if changed is None:
            return None
        queued = await self._outbox.send(changed.outbox)
        return queued or changed.task
