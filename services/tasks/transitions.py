"""What an applied report makes of a task and its attempts, without I/O.

The store reads a batch's tasks and attempts once, locked, and then asks :func:`settle` about
each report in stream order: the verdict (:func:`~sutazai.services.tasks.domain.judge`) and, if
it changes anything, the task and attempts as the report leaves them. Only the last of them is
written, in a few set-based statements for the whole batch, so a batch costs the same round
trips whatever its size and a task changed by three reports of one batch is written once.

``now`` is the batch's transaction time (PostgreSQL's ``now()``), the time every report of the
batch is stamped with, as statements of that transaction would have been.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from sutazai.services.tasks.domain import AttemptView, Event, TaskState, Verdict, judge
from sutazai.services.tasks.records import Report, StoredAttempt, StoredTask

Attempts = dict[int, StoredAttempt]
"""One task's attempts by number."""


@dataclass(slots=True)
class Batch:
    """A batch's tasks and attempts as its reports leave them, and what must be written."""

    now: datetime
    tasks: dict[uuid.UUID, StoredTask]
    """Task id → the task (only tasks that exist)."""
    attempts: dict[uuid.UUID, Attempts] = field(default_factory=dict)
    """Task id → its attempts."""
    changed_tasks: set[uuid.UUID] = field(default_factory=set)
    """Tasks to write (a report that touches only an attempt still bumps its task's version)."""
    changed_attempts: set[tuple[uuid.UUID, int]] = field(default_factory=set)
    """(task id, number) of the attempts to write (new or changed)."""

    def view(self, report: Report) -> AttemptView | None:
        """What :func:`judge` needs to know of the report's task and attempt."""
        task = self.tasks.get(report.task_id)
        if task is None:
            return None
        known = self.attempts.get(report.task_id, {}).get(report.attempt)
        return AttemptView(
            state=task.state,
            attempt=task.attempt,
            attempt_agent=known.agent_id if known else "",
            attempt_state=known.state if known else None,
        )


def settle(batch: Batch, report: Report) -> tuple[Verdict, TaskState | None]:
    """Judge ``report`` against ``batch`` and apply it there.

    Returns the verdict and, if the report changed the task or its attempt, the task's state
    after it.
    """
    verdict = judge(
        batch.view(report),
        sender=report.sender,
        agent=report.agent,
        event=report.event,
        attempt=report.attempt,
        next_attempt=report.next_attempt,
        reported_agent=report.reported_agent,
    )
    if verdict not in (Verdict.APPLY, Verdict.ATTEMPT_ONLY) or report.event is None:
        return verdict, None
    task = batch.tasks[report.task_id]
    attempts = batch.attempts.setdefault(report.task_id, {})
    changed = _TRANSITIONS[report.event](task, attempts, report, verdict, batch.now)
    batch.tasks[report.task_id] = changed.task
    batch.changed_tasks.add(report.task_id)
    for number, attempt in changed.attempts.items():
        attempts[number] = attempt
        batch.changed_attempts.add((report.task_id, number))
    return verdict, changed.task.state


@dataclass(frozen=True, slots=True)
class _Changed:
    task: StoredTask
    attempts: Attempts


def _attempt(attempts: Attempts, number: int) -> StoredAttempt:
    """The attempt a report names (``judge`` applies only reports about an existing one)."""
    return attempts[number]


def _assigned(
    task: StoredTask, attempts: Attempts, report: Report, _: Verdict, now: datetime
) -> _Changed:
    attempt = replace(_attempt(attempts, report.attempt), agent_id=report.reported_agent)
    # The coordinator may have taken the dispatch before the PubAck made the task QUEUED.
    return _Changed(
        replace(
            task,
            agent_id=report.reported_agent,
            waiting_reason="",
            state=TaskState.QUEUED if task.state is TaskState.PENDING else task.state,
            queued_at=task.queued_at or now,
        ),
        {attempt.number: attempt},
    )


def _waiting(
    task: StoredTask, _attempts: Attempts, report: Report, _: Verdict, now: datetime
) -> _Changed:
    return _Changed(
        replace(
            task,
            waiting_reason=report.reason,
            state=TaskState.QUEUED if task.state is TaskState.PENDING else task.state,
            queued_at=task.queued_at or now,
        ),
        {},
    )


def _started(
    task: StoredTask, attempts: Attempts, report: Report, _: Verdict, now: datetime
) -> _Changed:
    attempt = replace(_attempt(attempts, report.attempt), state=TaskState.RUNNING, started_at=now)
    return _Changed(
        replace(
            task,
            state=TaskState.RUNNING,
            started_at=now,
            waiting_reason="",
            progress=0.0,
            progress_message="",
        ),
        {attempt.number: attempt},
    )


def _progress(
    task: StoredTask, attempts: Attempts, report: Report, _: Verdict, now: datetime
) -> _Changed:
    # Progress implies the handler runs, even if its `started` report was lost.
    known = _attempt(attempts, report.attempt)
    attempt = replace(known, state=TaskState.RUNNING, started_at=known.started_at or now)
    return _Changed(
        replace(
            task,
            state=TaskState.RUNNING,
            started_at=task.started_at or now,
            progress=report.fraction,
            progress_message=report.message,
            waiting_reason="",
        ),
        {attempt.number: attempt},
    )


def _ended(
    attempts: Attempts, report: Report, state: TaskState, error: bytes | None, now: datetime
) -> Attempts:
    known = _attempt(attempts, report.attempt)
    attempt = replace(
        known, state=state, error=error, finished_at=now, started_at=known.started_at or now
    )
    return {attempt.number: attempt}


def _succeeded(
    task: StoredTask, attempts: Attempts, report: Report, verdict: Verdict, now: datetime
) -> _Changed:
    ended = _ended(attempts, report, TaskState.SUCCEEDED, None, now)
    if verdict is Verdict.ATTEMPT_ONLY:
        return _Changed(task, ended)
    return _Changed(
        replace(
            task,
            state=TaskState.SUCCEEDED,
            result=report.result,
            progress=1.0,
            finished_at=now,
            started_at=task.started_at or now,
        ),
        ended,
    )


def _failed(
    task: StoredTask, attempts: Attempts, report: Report, verdict: Verdict, now: datetime
) -> _Changed:
    ended = _ended(attempts, report, TaskState.FAILED, report.error, now)
    if verdict is Verdict.ATTEMPT_ONLY or report.retryable:
        # Retryable: the coordinator queues the next attempt (`requeued`) or gives up
        # (`dead_lettered`); the task waits for that.
        return _Changed(task, ended)
    return _Changed(
        replace(task, state=TaskState.FAILED, error=report.error, finished_at=now), ended
    )


def _cancelled(
    task: StoredTask, attempts: Attempts, report: Report, verdict: Verdict, now: datetime
) -> _Changed:
    ended = _ended(attempts, report, TaskState.CANCELLED, report.error, now)
    if verdict is Verdict.ATTEMPT_ONLY:
        return _Changed(task, ended)
    # An agent stops a handler only when the task was cancelled; should the record not know
    # (its CancelTask was answered elsewhere and lost), the agent's word ends the task.
    return _Changed(
        replace(task, state=TaskState.CANCELLED, error=report.error, finished_at=now), ended
    )


def _given_up(attempts: Attempts, report: Report, now: datetime) -> Attempts:
    """The named attempt ended FAILED, unless it already ended (the agent's word first)."""
    known = _attempt(attempts, report.attempt)
    if known.state not in (TaskState.QUEUED, TaskState.RUNNING):
        return {}
    attempt = replace(
        known,
        state=TaskState.FAILED,
        error=report.error if report.error is not None else known.error,
        finished_at=known.finished_at or now,
    )
    return {attempt.number: attempt}


def _requeued(
    task: StoredTask, attempts: Attempts, report: Report, _: Verdict, now: datetime
) -> _Changed:
    written = _given_up(attempts, report, now)
    # An existing next attempt (a repeat) is left as it is.
    if report.next_attempt not in attempts:
        written[report.next_attempt] = StoredAttempt(
            number=report.next_attempt,
            agent_id="",
            state=TaskState.QUEUED,
            started_at=None,
            finished_at=None,
            error=None,
        )
    return _Changed(
        replace(
            task,
            state=TaskState.QUEUED,
            attempt=report.next_attempt,
            max_attempts=max(task.max_attempts, report.next_attempt),
            agent_id="",
            progress=0.0,
            progress_message="",
            started_at=None,
            queued_at=now,
            waiting_reason="",
        ),
        written,
    )


def _dead_lettered(
    task: StoredTask, attempts: Attempts, report: Report, _: Verdict, now: datetime
) -> _Changed:
    return _Changed(
        replace(
            task,
            state=TaskState.FAILED,
            error=report.error,
            dead_lettered=True,
            dead_letter_sequence=report.dead_letter_sequence or None,
            finished_at=now,
        ),
        _given_up(attempts, report, now),
    )


_TRANSITIONS = {
    Event.ASSIGNED: _assigned,
    Event.WAITING: _waiting,
    Event.STARTED: _started,
    Event.PROGRESS: _progress,
    Event.SUCCEEDED: _succeeded,
    Event.FAILED: _failed,
    Event.CANCELLED: _cancelled,
    Event.REQUEUED: _requeued,
    Event.DEAD_LETTERED: _dead_lettered,
}
