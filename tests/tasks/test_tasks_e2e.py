"""The task service on the real mesh, through Envoy (gRPC and REST), with real NATS.

NATS ``admin`` plays the coordinator and the agents: it publishes their reports on their
subjects, exactly as the wire contract (nats/README.md) has them do.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import httpx
from google.rpc import code_pb2
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from sutazai.tasks.v1 import dispatch_pb2
from sutazai.tasks.v1 import task_service_pb2 as pb
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.auth.helpers import bearer, failure, field_violations
from tests.harness.waiting import wait_for
from tests.tasks.helpers import (
    COORDINATOR,
    NOBODY_RUNS,
    TIMEOUT,
    agent_subject,
    create,
    failure_status,
    get,
    report,
    settled,
    state_becomes,
    struct,
)

# Validation -------------------------------------------------------------------------------------


async def test_bad_requests_name_every_field_over_grpc_and_rest(
    tasks: TaskServiceStub, rest: httpx.AsyncClient, user_token: str
) -> None:
    before = await tasks.ListTasks(pb.ListTasksRequest(page_size=100), metadata=bearer(user_token))
    bad = pb.CreateTaskRequest(
        type="Text Summarize!",
        payload=struct(blob="x" * (64 * 1024)),
        priority=7,
        required_capabilities=["gpu", "gpu", "Bad Cap"],
        resources=[
            pb.ResourceNeed(resource_type=1, amount=2),
            pb.ResourceNeed(resource_type=1, amount=1),
            pb.ResourceNeed(resource_type=5, amount=0),
        ],
        timeout_seconds=86_401,
        idempotency_key="k" * 129,
        max_attempts=11,
    )
    error = await failure(tasks.CreateTask(bad, metadata=bearer(user_token), timeout=TIMEOUT))
    assert set(field_violations(error)) == {
        "type",
        "payload",
        "priority",
        "required_capabilities[1]",
        "required_capabilities[2]",
        "resources[1].resource_type",
        "resources[2].amount",
        "timeout_seconds",
        "idempotency_key",
        "max_attempts",
    }
    assert "at most 65536 bytes" in (error.details() or "")

    reply = await rest.post("/v1/tasks", json={"type": "text.summarize", "priority": 7})
    assert reply.status_code == 400, reply.text
    violations = reply.json()["details"][0]["field_violations"]
    assert [v["field"] for v in violations] == ["priority"]
    assert "0 (low) to 3 (critical)" in violations[0]["description"]

    oversized = await rest.post(
        "/v1/tasks", json={"type": "text.summarize", "payload": {"text": "x" * 70_000}}
    )
    assert oversized.status_code == 400, oversized.text
    assert [v["field"] for v in oversized.json()["details"][0]["field_violations"]] == ["payload"]

    for call in (
        rest.get("/v1/tasks/not-a-uuid"),
        rest.post("/v1/tasks/12345:cancel", json={}),
        rest.get("/v1/tasks", params={"page_token": "zz", "page_size": 101}),
    ):
        malformed = await call
        assert malformed.status_code == 400, malformed.text
    malformed_id = await failure(
        tasks.GetTask(pb.GetTaskRequest(task_id="not-a-uuid"), metadata=bearer(user_token))
    )
    assert set(field_violations(malformed_id)) == {"task_id"}

    after = await tasks.ListTasks(pb.ListTasksRequest(page_size=100), metadata=bearer(user_token))
    assert after.tasks == before.tasks, "nothing stored"


# Creating ---------------------------------------------------------------------------------------


async def test_a_created_task_is_queued_with_its_dispatch_on_the_stream(
    rest: httpx.AsyncClient, admin_nats: Client
) -> None:
    reply = await rest.post(
        "/v1/tasks",
        json={
            "type": NOBODY_RUNS,
            "payload": {"text": "hello", "n": 2},
            "priority": 2,
            "required_capabilities": ["lang.en"],
            "resources": [{"resource_type": "RESOURCE_TYPE_CPU", "amount": 0.5}],
        },
    )

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["created"] is True
    task = body["task"]
    assert task["state"] == "TASK_STATE_QUEUED"
    assert task["attempt"] == 1
    assert task["max_attempts"] == 3
    assert task["timeout_seconds"] == 300
    assert task["payload"] == {"text": "hello", "n": 2}
    assert task["queued_at"]
    # The dispatch is on its priority's subject with the contract's message id.
    message = await admin_nats.jetstream().get_last_msg("SUTAZAI_TASKS", "sutazai.tasks.queue.2")
    dispatch = dispatch_pb2.TaskDispatch.FromString(message.data or b"")
    assert dispatch.task_id == task["task_id"]
    assert dispatch.attempt == 1
    assert dispatch.type == NOBODY_RUNS
    assert list(dispatch.required_capabilities) == ["lang.en"]
    assert dispatch.resources[0].amount == 0.5
    assert dict(dispatch.payload) == {"text": "hello", "n": 2.0}
    assert dispatch.max_attempts == 3
    assert message.headers is not None
    assert message.headers.get("Nats-Msg-Id") == f"{task['task_id']}.1"


async def test_a_repeated_idempotency_key_returns_the_original_task(
    tasks: TaskServiceStub, user_token: str, other_user_token: str
) -> None:
    key = f"order-{uuid.uuid4()}"
    first = await create(tasks, user_token, idempotency_key=key, payload=struct(n=1))
    again = await create(tasks, user_token, idempotency_key=key, payload=struct(n=2))
    racing = await asyncio.gather(
        *(create(tasks, user_token, idempotency_key=f"{key}-race") for _ in range(5))
    )
    someone_else = await create(tasks, other_user_token, idempotency_key=key)

    assert first.created is True
    assert again.created is False
    assert again.task.task_id == first.task.task_id
    assert dict(again.task.payload) == {"n": 1.0}, "the original, not the repeat"
    assert len({r.task.task_id for r in racing}) == 1
    assert sum(r.created for r in racing) == 1
    assert someone_else.created is True
    assert someone_else.task.task_id != first.task.task_id


# Ownership --------------------------------------------------------------------------------------


async def test_users_see_only_their_own_tasks_and_operators_see_all(
    tasks: TaskServiceStub, user_token: str, other_user_token: str, operator_token: str
) -> None:
    mine = (await create(tasks, user_token)).task

    for call in (
        tasks.GetTask(pb.GetTaskRequest(task_id=mine.task_id), metadata=bearer(other_user_token)),
        tasks.CancelTask(
            pb.CancelTaskRequest(task_id=mine.task_id), metadata=bearer(other_user_token)
        ),
    ):
        error = await failure(call)
        assert error.code() is grpc.StatusCode.NOT_FOUND
    theirs = await tasks.ListTasks(pb.ListTasksRequest(), metadata=bearer(other_user_token))
    assert mine.task_id not in {t.task_id for t in theirs.tasks}
    denied = await failure(
        tasks.ListTasks(pb.ListTasksRequest(all_users=True), metadata=bearer(other_user_token))
    )
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED

    assert (await get(tasks, operator_token, mine.task_id)).owner_id == mine.owner_id
    everyone = await tasks.ListTasks(
        pb.ListTasksRequest(all_users=True, type=NOBODY_RUNS), metadata=bearer(operator_token)
    )
    assert mine.task_id in {t.task_id for t in everyone.tasks}
    own = await tasks.ListTasks(pb.ListTasksRequest(), metadata=bearer(operator_token))
    assert mine.task_id not in {t.task_id for t in own.tasks}, "all_users is opt-in"


async def test_list_pages_newest_first_with_filters(
    tasks: TaskServiceStub, other_user_token: str
) -> None:
    kind = f"tests.paging-{uuid.uuid4().hex[:8]}"
    created = [(await create(tasks, other_user_token, type=kind)).task.task_id for _ in range(5)]

    seen: list[str] = []
    token = ""
    while True:
        page = await tasks.ListTasks(
            pb.ListTasksRequest(page_size=2, page_token=token, type=kind),
            metadata=bearer(other_user_token),
        )
        assert len(page.tasks) <= 2
        seen += [t.task_id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert seen == created[::-1]
    running = await tasks.ListTasks(
        pb.ListTasksRequest(type=kind, states=[pb.TASK_STATE_RUNNING]),
        metadata=bearer(other_user_token),
    )
    assert list(running.tasks) == []


# Reports ----------------------------------------------------------------------------------------


async def test_reports_drive_the_task_and_stale_or_foreign_ones_are_dropped(
    tasks: TaskServiceStub, user_token: str, admin_nats: Client
) -> None:
    js = admin_nats.jetstream()
    task = (await create(tasks, user_token)).task
    agent = f"testagent.{uuid.uuid4().hex[:8]}"
    # The mesh's real coordinator holds the task too, and says once why it waits: let that come
    # first, or it would land after the `assigned` played below and set the reason again.

    async def explained() -> bool:
        return bool((await get(tasks, user_token, task.task_id)).waiting_reason)

    await wait_for(explained, timeout=15, interval=0.05, message="the real coordinator's reason")

    await report(
        js,
        COORDINATOR,
        task.task_id,
        1,
        agent,
        waiting=dispatch_pb2.TaskWaiting(reason="no online agent offers tests.nobody-runs-this"),
    )
    waiting = await state_becomes(tasks, user_token, task.task_id, pb.TASK_STATE_QUEUED)
    await settled(js, await report(js, COORDINATOR, task.task_id, 1, agent, assigned={}))
    waiting = await get(tasks, user_token, task.task_id)
    assert waiting.agent_id == agent
    assert waiting.waiting_reason == ""

    await report(js, agent_subject(agent), task.task_id, 1, agent, started={})
    running = await state_becomes(tasks, user_token, task.task_id, pb.TASK_STATE_RUNNING)
    assert running.attempts[0].agent_id == agent
    assert running.attempts[0].state == pb.TASK_STATE_RUNNING
    assert running.started_at.seconds > 0

    # A stale attempt, an agent the attempt was not given to, an agent posing as the
    # coordinator: all dropped.
    result = struct(answer="wrong")
    await report(js, agent_subject(agent), task.task_id, 2, agent, succeeded={"result": result})
    await report(
        js, agent_subject("intruder.x1"), task.task_id, 1, agent, succeeded={"result": result}
    )
    await report(js, agent_subject(agent), task.task_id, 1, agent, dead_lettered={})
    await settled(
        js,
        await report(
            js,
            agent_subject(agent),
            task.task_id,
            1,
            agent,
            progress=dispatch_pb2.TaskProgress(fraction=0.5, message="half"),
        ),
    )
    halfway = await get(tasks, user_token, task.task_id)
    assert halfway.state == pb.TASK_STATE_RUNNING
    assert halfway.progress == 0.5
    assert halfway.progress_message == "half"
    assert not halfway.HasField("result")

    await report(
        js, agent_subject(agent), task.task_id, 1, agent, succeeded={"result": struct(answer=42)}
    )
    done = await state_becomes(tasks, user_token, task.task_id, pb.TASK_STATE_SUCCEEDED)
    assert dict(done.result) == {"answer": 42.0}
    assert done.progress == 1.0
    assert done.finished_at.seconds > 0
    assert [a.state for a in done.attempts] == [pb.TASK_STATE_SUCCEEDED]

    # Final is final: a late failure, a re-queue or a cancellation change nothing.
    await report(
        js,
        agent_subject(agent),
        task.task_id,
        1,
        agent,
        failed=dispatch_pb2.TaskFailed(error=failure_status(code_pb2.INTERNAL, "late")),
    )
    await settled(
        js,
        await report(
            js,
            COORDINATOR,
            task.task_id,
            1,
            agent,
            requeued=dispatch_pb2.TaskRequeued(next_attempt=2),
        ),
    )
    still = await get(tasks, user_token, task.task_id)
    assert still.state == pb.TASK_STATE_SUCCEEDED
    assert dict(still.result) == {"answer": 42.0}
    assert still.attempt == 1
    cancel = await failure(
        tasks.CancelTask(pb.CancelTaskRequest(task_id=task.task_id), metadata=bearer(user_token))
    )
    assert cancel.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_retry_then_a_non_retryable_failure(
    tasks: TaskServiceStub, user_token: str, admin_nats: Client
) -> None:
    js = admin_nats.jetstream()
    task = (await create(tasks, user_token)).task
    first, second = f"retry.{uuid.uuid4().hex[:6]}", f"retry.{uuid.uuid4().hex[:6]}"

    # The agent's report overtakes the coordinator's `assigned`: it is applied once that came.
    await report(js, agent_subject(first), task.task_id, 1, first, started={})
    await report(js, COORDINATOR, task.task_id, 1, first, assigned={})
    await state_becomes(tasks, user_token, task.task_id, pb.TASK_STATE_RUNNING)
    await report(
        js,
        agent_subject(first),
        task.task_id,
        1,
        first,
        failed=dispatch_pb2.TaskFailed(
            error=failure_status(code_pb2.UNAVAILABLE, "flaky"), retryable=True
        ),
    )
    await report(
        js,
        COORDINATOR,
        task.task_id,
        1,
        first,
        requeued=dispatch_pb2.TaskRequeued(
            error=failure_status(code_pb2.UNAVAILABLE, "flaky"), next_attempt=2
        ),
    )
    again = await state_becomes(tasks, user_token, task.task_id, pb.TASK_STATE_QUEUED)
    assert again.attempt == 2
    assert again.agent_id == ""
    assert [a.state for a in again.attempts] == [pb.TASK_STATE_FAILED, pb.TASK_STATE_QUEUED]
    assert again.attempts[0].error.message == "flaky"

    await report(js, COORDINATOR, task.task_id, 2, second, assigned={})
    # The first attempt's agent no longer counts.
    await report(js, agent_subject(first), task.task_id, 2, second, started={})
    await settled(js, await report(js, agent_subject(second), task.task_id, 2, second, started={}))
    await report(
        js,
        agent_subject(second),
        task.task_id,
        2,
        second,
        failed=dispatch_pb2.TaskFailed(
            error=failure_status(code_pb2.INVALID_ARGUMENT, "bad input"), retryable=False
        ),
    )
    failed = await state_becomes(tasks, user_token, task.task_id, pb.TASK_STATE_FAILED)
    assert failed.error.code == code_pb2.INVALID_ARGUMENT
    assert failed.error.message == "bad input"
    assert failed.agent_id == second
    assert not failed.dead_lettered


# Cancelling -------------------------------------------------------------------------------------


async def test_cancel_records_cancelled_and_reports_it(
    tasks: TaskServiceStub, rest: httpx.AsyncClient, admin_nats: Client
) -> None:
    created = await rest.post("/v1/tasks", json={"type": NOBODY_RUNS})
    task_id = created.json()["task"]["task_id"]

    cancelled = await rest.post(f"/v1/tasks/{task_id}:cancel", json={"reason": "changed my mind"})

    assert cancelled.status_code == 200, cancelled.text
    task = cancelled.json()["task"]
    assert task["state"] == "TASK_STATE_CANCELLED"
    assert task["error"]["code"] == code_pb2.CANCELLED
    assert task["error"]["message"] == "changed my mind"
    js = admin_nats.jetstream()
    last = await js.get_last_msg("SUTAZAI_REPORTS", "sutazai.reports.tasks")
    sent = dispatch_pb2.TaskReport.FromString(last.data or b"")
    assert sent.task_id == task_id
    assert sent.attempt == 1
    assert sent.cancel_requested.reason == "changed my mind"

    again = await rest.post(f"/v1/tasks/{task_id}:cancel", json={})
    assert again.status_code == 400, "FAILED_PRECONDITION is HTTP 400"
    assert "already finished" in again.json()["message"]


# Watching ---------------------------------------------------------------------------------------


async def test_watch_task_follows_queued_running_succeeded_and_ends(
    tasks: TaskServiceStub, rest: httpx.AsyncClient, user_token: str, admin_nats: Client
) -> None:
    js = admin_nats.jetstream()
    task = (await create(tasks, user_token)).task
    agent = f"watched.{uuid.uuid4().hex[:6]}"
    stream = tasks.WatchTask(
        pb.WatchTaskRequest(task_id=task.task_id), metadata=bearer(user_token), timeout=30
    )
    first = await stream.read()
    assert first.task.state == pb.TASK_STATE_QUEUED

    states = [first.task.state]
    last = first.task

    async def follow(until: int) -> None:
        nonlocal last
        while last.state != until:
            message = await stream.read()
            assert isinstance(message, pb.WatchTaskResponse), "ended early"
            if message.task.state != states[-1]:
                states.append(message.task.state)
            last = message.task

    # Each step waits for the watch itself to show it (changes between two reads may merge).
    await report(js, COORDINATOR, task.task_id, 1, agent, assigned={})
    await report(js, agent_subject(agent), task.task_id, 1, agent, started={})
    await follow(pb.TASK_STATE_RUNNING)
    await report(
        js, agent_subject(agent), task.task_id, 1, agent, succeeded={"result": struct(ok=True)}
    )
    await follow(pb.TASK_STATE_SUCCEEDED)
    assert await stream.read() is grpc.aio.EOF, "the stream ends after a final state"

    assert states == [pb.TASK_STATE_QUEUED, pb.TASK_STATE_RUNNING, pb.TASK_STATE_SUCCEEDED]
    assert dict(last.result) == {"ok": True}
    assert last.attempts[0].agent_id == agent
    # REST: NDJSON; a finished task is one line, then the stream ends.
    async with rest.stream("GET", f"/v1/tasks/{task.task_id}:watch") as response:
        assert response.status_code == 200
        lines = [json.loads(line) async for line in response.aiter_lines() if line.strip()]
    assert [line["task"]["state"] for line in lines] == ["TASK_STATE_SUCCEEDED"]


async def test_watch_tasks_sends_a_snapshot_then_changes(
    tasks: TaskServiceStub, other_user_token: str, user_token: str
) -> None:
    kind = f"tests.watching-{uuid.uuid4().hex[:8]}"
    before = (await create(tasks, other_user_token, type=kind)).task
    stream = tasks.WatchTasks(
        pb.WatchTasksRequest(type=kind), metadata=bearer(other_user_token), timeout=30
    )
    snapshot = await stream.read()
    assert snapshot.snapshot is True
    assert snapshot.task.task_id == before.task_id

    await create(tasks, user_token, type=kind)  # another user's: never seen
    fresh = (await create(tasks, other_user_token, type=kind)).task
    cancelled = await tasks.CancelTask(
        pb.CancelTaskRequest(task_id=before.task_id), metadata=bearer(other_user_token)
    )
    seen: list[tuple[str, int]] = []
    while len(seen) < 2 or seen[-1] != (before.task_id, pb.TASK_STATE_CANCELLED):
        message = await stream.read()
        assert message.snapshot is False
        if message.HasField("task"):
            seen.append((message.task.task_id, message.task.state))
    stream.cancel()

    assert (fresh.task_id, fresh.state) in seen or (fresh.task_id, pb.TASK_STATE_PENDING) in seen
    assert {task_id for task_id, _ in seen} == {fresh.task_id, before.task_id}
    assert cancelled.task.state == pb.TASK_STATE_CANCELLED


async def test_watch_tasks_answers_at_once_when_nothing_matches(
    rest: httpx.AsyncClient, tasks: TaskServiceStub, user_token: str
) -> None:
    kind = f"tests.nothing-{uuid.uuid4().hex[:8]}"
    # REST: the status line and a keep-alive (no task) come at once, not after 30 s.
    async with rest.stream("GET", "/v1/tasks:watch", params={"type": kind}) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        first = await anext(line async for line in lines if line.strip())
    assert "task" not in json.loads(first), first

    stream = tasks.WatchTasks(
        pb.WatchTasksRequest(type=kind), metadata=bearer(user_token), timeout=TIMEOUT
    )
    keepalive = await stream.read()
    stream.cancel()
    assert isinstance(keepalive, pb.WatchTasksResponse)
    assert not keepalive.HasField("task")
    assert keepalive.snapshot is False


# Dead letters -----------------------------------------------------------------------------------


async def test_dead_letters_are_listed_for_operators_and_requeued(
    tasks: TaskServiceStub, user_token: str, operator_token: str, admin_nats: Client
) -> None:
    js = admin_nats.jetstream()
    task = (await create(tasks, user_token, max_attempts=1)).task
    agent = f"dead.{uuid.uuid4().hex[:6]}"
    await report(js, COORDINATOR, task.task_id, 1, agent, assigned={})
    await report(js, agent_subject(agent), task.task_id, 1, agent, started={})
    lost = failure_status(code_pb2.UNAVAILABLE, "the agent went away")
    dead = dispatch_pb2.TaskDispatch(task_id=task.task_id, attempt=1, type=task.type)
    ack = await js.publish("sutazai.dead.tasks", dead.SerializeToString(), timeout=TIMEOUT)
    await report(
        js,
        COORDINATOR,
        task.task_id,
        1,
        agent,
        dead_lettered=dispatch_pb2.TaskDeadLettered(error=lost, stream_sequence=ack.seq),
    )

    failed = await state_becomes(tasks, user_token, task.task_id, pb.TASK_STATE_FAILED)
    assert failed.dead_lettered
    assert failed.error.message == "the agent went away"
    listed = await tasks.ListDeadLetters(
        pb.ListDeadLettersRequest(page_size=100), metadata=bearer(operator_token)
    )
    assert task.task_id in {t.task_id for t in listed.tasks}
    for call in (
        tasks.ListDeadLetters(pb.ListDeadLettersRequest(), metadata=bearer(user_token)),
        tasks.RequeueDeadLetter(
            pb.RequeueDeadLetterRequest(task_id=task.task_id), metadata=bearer(user_token)
        ),
    ):
        assert (await failure(call)).code() is grpc.StatusCode.PERMISSION_DENIED

    requeued = await tasks.RequeueDeadLetter(
        pb.RequeueDeadLetterRequest(task_id=task.task_id), metadata=bearer(operator_token)
    )

    assert requeued.task.state == pb.TASK_STATE_QUEUED
    assert requeued.task.attempt == 2
    assert requeued.task.max_attempts == 2, "one more attempt: the task's own allowance"
    assert not requeued.task.dead_lettered
    dispatched = await js.get_last_msg("SUTAZAI_TASKS", f"sutazai.tasks.queue.{task.priority}")
    assert dispatched.headers is not None
    assert dispatched.headers.get("Nats-Msg-Id") == f"{task.task_id}.2"

    async def deleted() -> bool:
        try:
            await js.get_msg("SUTAZAI_DEAD", ack.seq)
        except NotFoundError:
            return True
        return False

    await wait_for(deleted, timeout=10, message="the dead letter deleted from SUTAZAI_DEAD")
    listed = await tasks.ListDeadLetters(
        pb.ListDeadLettersRequest(page_size=100), metadata=bearer(operator_token)
    )
    assert task.task_id not in {t.task_id for t in listed.tasks}
    twice = await failure(
        tasks.RequeueDeadLetter(
            pb.RequeueDeadLetterRequest(task_id=task.task_id), metadata=bearer(operator_token)
        )
    )
    assert twice.code() is grpc.StatusCode.FAILED_PRECONDITION
