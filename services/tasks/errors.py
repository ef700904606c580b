"""The task service's exception tree, and its refusals (built by :mod:`sutazai.runtime.faults`).

TasksError                  root of every error raised by :mod:`sutazai.services.tasks`
├── QueueFullError          store: as many tasks are unfinished as the queue bound allows
├── TaskFinishedError       store: the task already ended (cancelling it is refused)
└── NotDeadLetteredError    store: the task is not in the dead-letter list (no re-queue)

``tests/test_error_trees.py`` keeps this drawing complete and its branches true.
"""

from __future__ import annotations

import uuid


class TasksError(Exception):
    """Root of every error raised by :mod:`sutazai.services.tasks`."""


class QueueFullError(TasksError):
    """The queue bound is reached: no task is accepted until some finish."""

    def __init__(self, bound: int) -> None:
        super().__init__(f"{bound} tasks are unfinished, the most the queue holds: try later")
        self.bound = bound


class TaskFinishedError(TasksError):
    """The task reached a final state; it cannot be cancelled any more."""

    def __init__(self, task_id: uuid.UUID, state: str) -> None:
        super().__init__(f"task {task_id} already finished ({state})")
        self.task_id = task_id
        self.state = state


class NotDeadLetteredError(TasksError):
    """The task is not a dead letter, so there is nothing to re-queue."""

    def __init__(self, task_id: uuid.UUID) -> None:
        super().__init__(f"task {task_id} is not in the dead-letter list")
        self.task_id = task_id
