"""Reports applied to the task record in batches (``TaskStore.apply_many``), on a schema of the
test's own: what each report's verdict is, and what ends up in ``tasks`` and ``attempts``."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from sutazai.services.tasks.domain import Event, Sender, TaskState, Verdict
from sutazai.services.tasks.messages import DISPATCH, cancel_report
from sutazai.services.tasks.records import Report, StoredTask
from sutazai.services.tasks.store import TaskStore
from tests.tasks.helpers import new_task

AGENT = "worker.1"


def coordinator(task: StoredTask, event: Event, attempt: int = 1, **facts: object) -> Report:
    return Report(
        task_id=task.task_id,
        attempt=attempt,
        sender=Sender.COORDINATOR,
        agent="",
        event=event,
        **facts,  # type: ignore[arg-type]
    )


def agent(task: StoredTask, event: Event, attempt: int = 1, **facts: object) -> Report:
    return Report(
        task_id=task.task_id,
        attempt=attempt,
        sender=Sender.AGENT,
        agent=AGENT,
        event=event,
        **facts,  # type: ignore[arg-type]
    )


async def stored(store: TaskStore) -> StoredTask:
    changed, _ = await store.create(new_task(), queue_bound=100, dispatch=DISPATCH)
    return changed.task


async def current(store: TaskStore, task: StoredTask) -> StoredTask:
    found = await store.get(task.task_id)
    assert found is not None
    return found


async def test_a_whole_run_in_one_batch_is_one_row_version_with_every_fact(
    store: TaskStore,
) -> None:
    task = await stored(store)
    assigned = coordinator(task, Event.ASSIGNED, reported_agent=AGENT)

    [outcomes] = await store.apply_many(
        [
            [
                assigned,
                agent(task, Event.STARTED),
                agent(task, Event.PROGRESS, fraction=0.5, message="half"),
                agent(task, Event.SUCCEEDED, result=b"\x01\x02"),
            ]
        ]
    )

    assert outcomes == [
        (Verdict.APPLY, TaskState.QUEUED),
        (Verdict.APPLY, TaskState.RUNNING),
        (Verdict.APPLY, TaskState.RUNNING),
        (Verdict.APPLY, TaskState.SUCCEEDED),
    ]
    after = await current(store, task)
    assert after.version == task.version + 1
    assert after.state is TaskState.SUCCEEDED
    assert (after.agent_id, after.result, after.progress) == (AGENT, b"\x01\x02", 1.0)
    assert after.progress_message == "half"
    assert after.queued_at is not None
    assert after.started_at == after.finished_at, "one transaction, one time"
    [attempt] = await store.attempts(task.task_id)
    assert (attempt.agent_id, attempt.state) == (AGENT, TaskState.SUCCEEDED)
    assert attempt.started_at == attempt.finished_at == after.finished_at


async def test_an_agent_report_that_overtook_its_assigned_in_the_batch_is_applied_after_it(
    store: TaskStore,
) -> None:
    task = await stored(store)

    [outcomes] = await store.apply_many(
        [[agent(task, Event.STARTED), coordinator(task, Event.ASSIGNED, reported_agent=AGENT)]]
    )

    assert outcomes == [(Verdict.APPLY, TaskState.RUNNING), (Verdict.APPLY, TaskState.QUEUED)]
    after = await current(store, task)
    # Applied in the order judged: assigned, then started.
    assert after.state is TaskState.RUNNING
    [attempt] = await store.attempts(task.task_id)
    assert (attempt.agent_id, attempt.state) == (AGENT, TaskState.RUNNING)


async def test_a_requeue_ends_the_attempt_and_opens_the_next_and_a_repeat_changes_nothing(
    store: TaskStore,
) -> None:
    task = await stored(store)
    await store.apply_many(
        [[coordinator(task, Event.ASSIGNED, reported_agent=AGENT), agent(task, Event.STARTED)]]
    )
    requeued = coordinator(task, Event.REQUEUED, next_attempt=2, error=b"lost")

    [first] = await store.apply_many([[requeued]])
    queued = await current(store, task)
    [again] = await store.apply_many([[requeued]])

    assert first == [(Verdict.APPLY, TaskState.QUEUED)]
    assert again == [(Verdict.STALE, None)], "the task is on attempt 2 now"
    assert (queued.state, queued.attempt, queued.agent_id) == (TaskState.QUEUED, 2, "")
    assert queued.started_at is None
    assert await current(store, task) == queued
    one, two = await store.attempts(task.task_id)
    assert (one.state, one.error, one.agent_id) == (TaskState.FAILED, b"lost", AGENT)
    assert one.finished_at is not None
    assert (two.number, two.state, two.agent_id) == (2, TaskState.QUEUED, "")


async def test_an_attempt_that_ended_before_its_task_is_recorded_and_the_task_is_not_changed(
    store: TaskStore,
) -> None:
    task = await stored(store)
    await store.apply_many(
        [[coordinator(task, Event.ASSIGNED, reported_agent=AGENT), agent(task, Event.STARTED)]]
    )
    cancelled = await store.cancel(
        task.task_id, owner_id=None, error=b"stop", report=cancel_report("stop")
    )
    assert cancelled is not None
    before = await current(store, task)

    [outcomes] = await store.apply_many([[agent(task, Event.SUCCEEDED, result=b"late")]])

    assert outcomes == [(Verdict.ATTEMPT_ONLY, TaskState.CANCELLED)]
    after = await current(store, task)
    assert (after.state, after.result, after.error) == (TaskState.CANCELLED, None, b"stop")
    assert after.version == before.version + 1, "its watchers see the attempt's change"
    [attempt] = await store.attempts(task.task_id)
    assert attempt.state is TaskState.SUCCEEDED


@pytest.mark.parametrize(
    ("retryable", "state"), [(True, TaskState.RUNNING), (False, TaskState.FAILED)]
)
async def test_a_failure_ends_the_task_only_when_it_is_not_retried(
    store: TaskStore, retryable: bool, state: TaskState
) -> None:
    task = await stored(store)
    failed = agent(task, Event.FAILED, error=b"boom", retryable=retryable)

    [outcomes] = await store.apply_many(
        [
            [
                coordinator(task, Event.ASSIGNED, reported_agent=AGENT),
                agent(task, Event.STARTED),
                failed,
            ]
        ]
    )

    assert outcomes[-1] == (Verdict.APPLY, state)
    after = await current(store, task)
    assert after.state is state
    assert after.error == (None if retryable else b"boom")
    [attempt] = await store.attempts(task.task_id)
    assert (attempt.state, attempt.error) == (TaskState.FAILED, b"boom")


async def test_a_dead_letter_fails_the_task_for_good(store: TaskStore) -> None:
    task = await stored(store)

    [outcomes] = await store.apply_many(
        [
            [
                coordinator(task, Event.ASSIGNED, reported_agent=AGENT),
                coordinator(task, Event.DEAD_LETTERED, error=b"gave up", dead_letter_sequence=7),
                agent(task, Event.STARTED),
            ]
        ]
    )

    # The attempt ended with the task: a late report of its agent changes nothing.
    assert [v for v, _ in outcomes] == [Verdict.APPLY, Verdict.APPLY, Verdict.DUPLICATE]
    after = await current(store, task)
    assert (after.state, after.dead_lettered, after.dead_letter_sequence) == (
        TaskState.FAILED,
        True,
        7,
    )
    [attempt] = await store.attempts(task.task_id)
    assert (attempt.state, attempt.error) == (TaskState.FAILED, b"gave up")


async def test_reports_that_change_nothing_write_nothing(store: TaskStore) -> None:
    task = await stored(store)
    stranger = Report(
        task_id=task.task_id,
        attempt=1,
        sender=Sender.AGENT,
        agent="intruder.1",
        event=Event.SUCCEEDED,
        result=b"forged",
    )
    await store.apply_many([[coordinator(task, Event.ASSIGNED, reported_agent=AGENT)]])
    before = await current(store, task)

    outcomes = await store.apply_many(
        [
            [stranger, agent(task, Event.STARTED, attempt=3)],
            [coordinator(task, Event.ASSIGNED, reported_agent=AGENT)],
            [replace(agent(task, Event.STARTED), task_id=uuid.uuid4())],
        ]
    )

    assert outcomes == [
        [(Verdict.WRONG_AGENT, None), (Verdict.STALE, None)],
        [(Verdict.DUPLICATE, None)],
        [(Verdict.UNKNOWN_TASK, None)],
    ]
    assert await current(store, task) == before
