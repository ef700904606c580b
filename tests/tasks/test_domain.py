"""The task service's pure rules: validation, report verdicts, page tokens, hints, slots."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from sutazai.runtime.stream_slots import StreamSlots
from sutazai.services.tasks.domain import (
    AttemptView,
    Cursor,
    Event,
    ResourceNeed,
    Sender,
    TaskRequest,
    TaskState,
    Verdict,
    WatchFilter,
    backoff,
    create_violations,
    judge,
    parse_task_id,
    sender_of,
    size_of,
)
from sutazai.services.tasks.feed import MAX_HINTS, Hints
from sutazai.services.tasks.messages import decode_report
from sutazai.tasks.v1 import dispatch_pb2


def request(**changes: object) -> TaskRequest:
    fields: dict[str, object] = {
        "type": "text.summarize",
        "payload_bytes": 10,
        "priority": 0,
        "required_capabilities": [],
        "resources": [],
        "timeout_seconds": 0,
        "idempotency_key": "",
        "max_attempts": 0,
    }
    fields.update(changes)
    return TaskRequest(**fields)  # type: ignore[arg-type]


def test_a_good_request_has_no_violations() -> None:
    assert create_violations(request()) == {}
    assert (
        create_violations(
            request(
                type="a" * 128,
                payload_bytes=64 * 1024,
                priority=3,
                required_capabilities=[f"cap{i}" for i in range(16)],
                resources=[ResourceNeed(t, 0.5) for t in range(1, 6)],
                timeout_seconds=86_400,
                idempotency_key="k" * 128,
                max_attempts=10,
            )
        )
        == {}
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type": ""}, "type"),
        ({"type": "a" * 129}, "type"),
        ({"type": "Text.Summarize"}, "type"),
        ({"type": "text summarize"}, "type"),
        ({"payload_bytes": 64 * 1024 + 1}, "payload"),
        ({"priority": 4}, "priority"),
        ({"priority": 7}, "priority"),
        ({"required_capabilities": [f"c{i}" for i in range(17)]}, "required_capabilities"),
        ({"required_capabilities": ["ok", "NOT OK"]}, "required_capabilities[1]"),
        ({"required_capabilities": ["gpu", "gpu"]}, "required_capabilities[1]"),
        ({"resources": [ResourceNeed(0, 1)]}, "resources[0].resource_type"),
        ({"resources": [ResourceNeed(6, 1)]}, "resources[0].resource_type"),
        ({"resources": [ResourceNeed(1, 1), ResourceNeed(1, 2)]}, "resources[1].resource_type"),
        ({"resources": [ResourceNeed(1, 0)]}, "resources[0].amount"),
        ({"resources": [ResourceNeed(1, -1)]}, "resources[0].amount"),
        ({"resources": [ResourceNeed(1, float("nan"))]}, "resources[0].amount"),
        ({"resources": [ResourceNeed(1, float("inf"))]}, "resources[0].amount"),
        ({"resources": [ResourceNeed(1, 1)] * 6}, "resources"),
        ({"timeout_seconds": 86_401}, "timeout_seconds"),
        ({"idempotency_key": "k" * 129}, "idempotency_key"),
        ({"max_attempts": 11}, "max_attempts"),
    ],
)
def test_each_rule_names_its_field(changes: dict[str, object], field: str) -> None:
    assert set(create_violations(request(**changes))) == {field}


@pytest.mark.parametrize(
    "text", ["", "nope", "0" * 36, "{12345678-1234-5678-1234-567812345678}", "x" * 36]
)
def test_a_malformed_task_id_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"required|UUID"):
        parse_task_id(text)


def test_a_task_id_is_a_uuid() -> None:
    value = uuid.uuid4()
    assert parse_task_id(str(value)) == value


def test_sizes() -> None:
    assert size_of(0, 20, 100) == 20
    assert size_of(100, 20, 100) == 100
    for bad in (-1, 101):
        with pytest.raises(ValueError, match="between 1 and 100"):
            size_of(bad, 20, 100)


def test_page_tokens_round_trip_and_forgeries_are_refused() -> None:
    cursor = Cursor(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), uuid.uuid4())
    assert Cursor.parse(cursor.token()) == cursor
    for forged in ("zz", "e30", "x" * 201, "eyJ0IjoiMjAyNi0wMS0wMlQwMzowNDowNSIsImkiOiJ4In0"):
        with pytest.raises(ValueError, match="page token"):
            Cursor.parse(forged)


def test_the_sender_is_the_subject() -> None:
    assert sender_of("sutazai.reports.agent.text.a1") == (Sender.AGENT, "text.a1")
    assert sender_of("sutazai.reports.coordinator") == (Sender.COORDINATOR, "")
    assert sender_of("sutazai.reports.tasks") == (Sender.TASKS, "")
    assert sender_of("sutazai.reports.agent.text") == (Sender.UNKNOWN, "")
    assert sender_of("sutazai.reports.agent.text.a.b") == (Sender.UNKNOWN, "")
    assert sender_of("sutazai.reports.other") == (Sender.UNKNOWN, "")


def view(
    state: TaskState = TaskState.QUEUED,
    attempt: int = 1,
    agent: str = "a.1",
    attempt_state: TaskState | None = TaskState.QUEUED,
) -> AttemptView:
    return AttemptView(state, attempt, agent, attempt_state)


def agent_says(
    at: AttemptView | None, event: Event, agent: str = "a.1", attempt: int = 1
) -> Verdict:
    return judge(at, sender=Sender.AGENT, agent=agent, event=event, attempt=attempt)


def coordinator_says(
    at: AttemptView | None, event: Event, *, attempt: int = 1, agent: str = "a.1", **more: int
) -> Verdict:
    return judge(
        at,
        sender=Sender.COORDINATOR,
        agent="",
        event=event,
        attempt=attempt,
        reported_agent=agent,
        **more,  # type: ignore[arg-type]
    )


def test_agent_reports_apply_only_to_their_own_current_attempt() -> None:
    assert agent_says(view(), Event.STARTED) is Verdict.APPLY
    assert agent_says(view(attempt_state=TaskState.RUNNING), Event.SUCCEEDED) is Verdict.APPLY
    assert agent_says(view(), Event.STARTED, agent="b.2") is Verdict.WRONG_AGENT
    assert agent_says(view(attempt=2), Event.SUCCEEDED) is Verdict.STALE
    assert agent_says(view(attempt_state=None), Event.SUCCEEDED) is Verdict.STALE
    assert agent_says(view(agent=""), Event.STARTED) is Verdict.LATER
    assert agent_says(None, Event.STARTED) is Verdict.UNKNOWN_TASK


def test_repeats_change_nothing_and_final_is_final() -> None:
    running = view(state=TaskState.RUNNING, attempt_state=TaskState.RUNNING)
    assert agent_says(running, Event.STARTED) is Verdict.DUPLICATE
    done = view(state=TaskState.SUCCEEDED, attempt_state=TaskState.SUCCEEDED)
    assert agent_says(done, Event.SUCCEEDED) is Verdict.DUPLICATE
    assert agent_says(done, Event.FAILED) is Verdict.DUPLICATE
    assert coordinator_says(done, Event.REQUEUED, next_attempt=2) is Verdict.FINAL
    assert coordinator_says(done, Event.DEAD_LETTERED) is Verdict.FINAL
    cancelled = view(state=TaskState.CANCELLED, attempt_state=TaskState.RUNNING)
    assert agent_says(cancelled, Event.CANCELLED) is Verdict.ATTEMPT_ONLY
    assert agent_says(cancelled, Event.SUCCEEDED) is Verdict.ATTEMPT_ONLY
    assert agent_says(cancelled, Event.PROGRESS) is Verdict.FINAL
    assert agent_says(view(state=TaskState.CANCELLED, agent=""), Event.STARTED) is Verdict.FINAL


def test_coordinator_reports() -> None:
    assert coordinator_says(view(agent=""), Event.ASSIGNED) is Verdict.APPLY
    assert coordinator_says(view(), Event.ASSIGNED) is Verdict.DUPLICATE
    assert coordinator_says(view(), Event.ASSIGNED, agent="b.2") is Verdict.APPLY
    assert coordinator_says(view(agent=""), Event.ASSIGNED, agent="") is Verdict.MALFORMED
    assert (
        coordinator_says(view(attempt_state=TaskState.RUNNING), Event.ASSIGNED, agent="b.2")
        is Verdict.DUPLICATE
    )
    assert coordinator_says(view(state=TaskState.PENDING), Event.WAITING) is Verdict.APPLY
    assert coordinator_says(view(state=TaskState.RUNNING), Event.WAITING) is Verdict.DUPLICATE
    assert coordinator_says(view(), Event.REQUEUED, next_attempt=2) is Verdict.APPLY
    assert coordinator_says(view(), Event.REQUEUED, next_attempt=3) is Verdict.MALFORMED
    assert coordinator_says(view(), Event.REQUEUED, attempt=2, next_attempt=3) is Verdict.STALE
    assert coordinator_says(view(), Event.DEAD_LETTERED) is Verdict.APPLY


def test_senders_may_send_only_their_own_events() -> None:
    assert agent_says(view(), Event.ASSIGNED) is Verdict.FOREIGN
    assert agent_says(view(), Event.DEAD_LETTERED) is Verdict.FOREIGN
    assert coordinator_says(view(), Event.SUCCEEDED) is Verdict.FOREIGN
    assert (
        judge(view(), sender=Sender.UNKNOWN, agent="", event=Event.SUCCEEDED, attempt=1)
        is Verdict.FOREIGN
    )
    assert (
        judge(view(), sender=Sender.TASKS, agent="", event=Event.CANCEL_REQUESTED, attempt=1)
        is Verdict.OWN
    )
    assert agent_says(view(), Event.CANCEL_REQUESTED) is Verdict.FOREIGN
    assert judge(view(), sender=Sender.AGENT, agent="a.1", event=None, attempt=1) is (
        Verdict.MALFORMED
    )


def test_an_oversized_result_fails_the_attempt_for_good() -> None:
    report = dispatch_pb2.TaskReport(task_id=str(uuid.uuid4()), attempt=1)
    report.succeeded.result.update({"blob": "x" * (256 * 1024)})

    decoded = decode_report("sutazai.reports.agent.a.1", report.SerializeToString())

    assert decoded is not None
    assert decoded.event is Event.FAILED
    assert decoded.retryable is False
    assert decode_report("sutazai.reports.agent.a.1", b"\xff\xff") is None
    assert decode_report("sutazai.reports.agent.a.1", b"") is None, "no task id"


def test_progress_is_bounded() -> None:
    report = dispatch_pb2.TaskReport(task_id=str(uuid.uuid4()), attempt=1)
    report.progress.fraction = 7.0
    report.progress.message = "m" * 2000
    decoded = decode_report("sutazai.reports.agent.a.1", report.SerializeToString())
    assert decoded is not None
    assert decoded.fraction == 1.0
    assert len(decoded.message) == 512


def test_watch_filters() -> None:
    mine = WatchFilter(owner_id="u1", states=frozenset({TaskState.RUNNING}), type="")
    assert mine.matches("u1", TaskState.RUNNING, "x")
    assert not mine.matches("u1", TaskState.QUEUED, "x")
    assert not mine.matches("u2", TaskState.RUNNING, "x")
    assert not mine.visible("u2")
    everyone = WatchFilter(owner_id=None, states=frozenset(), type="t")
    assert everyone.matches("u2", TaskState.QUEUED, "t")
    assert not everyone.matches("u2", TaskState.QUEUED, "other")


def test_stream_slots_limit_callers_and_the_instance() -> None:
    slots = StreamSlots(limit=3, per_caller=2)
    assert slots.take("a")
    assert slots.take("a")
    assert not slots.take("a")
    assert slots.take("b")
    assert not slots.take("c")
    slots.give_back("a")
    assert slots.take("c")
    assert slots.open == 3


async def test_hints_collect_ids_and_turn_into_a_catch_up_when_too_many() -> None:
    one = uuid.uuid4()
    only = Hints(one)
    only.add(uuid.uuid4())
    assert not await only.wait(0.01), "another task's change is not this watcher's"
    only.add(one)
    assert await only.wait(0.01)
    assert only.take() == ({one}, False)

    hints = Hints(None)
    for _ in range(MAX_HINTS + 1):
        hints.add(uuid.uuid4())
    ids, resync = hints.take()
    assert resync
    assert ids == set()
    hints.add(None)
    assert hints.take() == (set(), True)
    waiter = asyncio.create_task(hints.wait(5))
    hints.add(one)
    assert await waiter


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.8]
    assert backoff(30) == 5.0
