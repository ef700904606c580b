"""The whole pipeline on the session mesh: nobody is played.

A task created through Envoy (gRPC and REST) goes from the task service through its outbox to
``SUTAZAI_TASKS``, the real coordinator assigns it to the real text agent (``text.1``, run by the
supervisor as its own NATS principal), which summarises on the inference service's embedded
model over NATS; the reports come back to the task service, which the watch follows.
"""

from __future__ import annotations

import uuid

import grpc
import httpx
from google.protobuf import json_format

from sutazai.tasks.v1 import task_service_pb2 as pb
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.auth.helpers import bearer, failure, field_violations
from tests.harness.waiting import wait_for
from tests.tasks.helpers import NOBODY_RUNS, TIMEOUT, create, get, struct

TEXT = (
    "The city council voted on Tuesday to build a new public library in the old train station. "
    "Construction starts next spring and takes two years."
)
SUMMARIZE = "text.summarize"
TEXT_AGENT = "text.1"
"""The supervisor's only instance of ``[agents.text]`` (deploy/mesh.toml)."""
RUN_TIMEOUT = 180.0
"""The embedded model on a loaded machine: generous, the task's own deadline is below it."""
ORDER = (pb.TASK_STATE_QUEUED, pb.TASK_STATE_RUNNING, pb.TASK_STATE_SUCCEEDED)


def summarize_request(**fields: object) -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(
        type=SUMMARIZE,
        payload=struct(text=TEXT, max_words=12),
        timeout_seconds=150,
        **fields,  # type: ignore[arg-type]
    )


async def test_a_summary_task_runs_on_the_text_agent_watched_to_success(
    tasks: TaskServiceStub, user_token: str
) -> None:
    created = await tasks.CreateTask(
        summarize_request(priority=2), metadata=bearer(user_token), timeout=TIMEOUT
    )
    assert created.created is True
    assert created.task.state == pb.TASK_STATE_QUEUED
    task_id = created.task.task_id

    stream = tasks.WatchTask(
        pb.WatchTaskRequest(task_id=task_id), metadata=bearer(user_token), timeout=RUN_TIMEOUT
    )
    states: list[pb.TaskState.ValueType] = [created.task.state]
    last = created.task
    async for message in stream:
        if message.task.state != states[-1]:
            states.append(message.task.state)
        last = message.task
    # The stream ends after a final state; changes between two reads may merge, never reorder.
    assert states[-1] == pb.TASK_STATE_SUCCEEDED, (states, last)
    assert [ORDER.index(s) for s in states] == sorted({ORDER.index(s) for s in states}), states

    assert last.attempt == 1
    assert last.agent_id == TEXT_AGENT
    assert [(a.number, a.agent_id, a.state) for a in last.attempts] == [
        (1, TEXT_AGENT, pb.TASK_STATE_SUCCEEDED)
    ]
    result = json_format.MessageToDict(last.result)
    assert result["summary"].strip(), result
    assert result["summary"].strip() != TEXT
    assert result["words"] == len(result["summary"].split())
    assert result["model"] == "smollm2-135m-instruct"
    assert last.started_at.ToDatetime() <= last.finished_at.ToDatetime()

    got = await get(tasks, user_token, task_id)
    assert got.state == pb.TASK_STATE_SUCCEEDED
    assert got.result == last.result
    listed = await tasks.ListTasks(
        pb.ListTasksRequest(type=SUMMARIZE, states=[pb.TASK_STATE_SUCCEEDED]),
        metadata=bearer(user_token),
        timeout=TIMEOUT,
    )
    assert task_id in {t.task_id for t in listed.tasks}


async def test_rest_creates_gets_lists_and_cancels(
    rest: httpx.AsyncClient, tasks: TaskServiceStub, user_token: str
) -> None:
    created = await rest.post(
        "/v1/tasks",
        json={
            "type": SUMMARIZE,
            "payload": {"text": TEXT, "max_words": 12},
            "timeout_seconds": 150,
        },
    )
    assert created.status_code == 200, created.text
    task_id = created.json()["task"]["task_id"]

    finished: list[dict[str, object]] = []

    async def succeeded() -> bool:
        reply = await rest.get(f"/v1/tasks/{task_id}")
        assert reply.status_code == 200, reply.text
        finished[:] = [reply.json()["task"]]
        assert finished[0]["state"] not in {"TASK_STATE_FAILED", "TASK_STATE_CANCELLED"}, reply.text
        return finished[0]["state"] == "TASK_STATE_SUCCEEDED"

    await wait_for(succeeded, timeout=RUN_TIMEOUT, interval=0.5, message=f"task {task_id} done")
    task = finished[0]
    assert task["attempt"] == 1
    assert task["agent_id"] == TEXT_AGENT
    assert str(task["result"]["summary"]).strip()  # type: ignore[index]

    listed = await rest.get("/v1/tasks", params={"type": SUMMARIZE, "page_size": 100})
    assert listed.status_code == 200, listed.text
    assert task_id in {t["task_id"] for t in listed.json()["tasks"]}

    # Cancelling: a finished task refuses, a waiting one is CANCELLED and the coordinator lets go.
    refused = await rest.post(f"/v1/tasks/{task_id}:cancel", json={})
    assert refused.status_code == 400, refused.text
    waiting = await rest.post("/v1/tasks", json={"type": NOBODY_RUNS})
    waiting_id = waiting.json()["task"]["task_id"]
    cancelled = await rest.post(f"/v1/tasks/{waiting_id}:cancel", json={"reason": "not needed"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["task"]["state"] == "TASK_STATE_CANCELLED"
    assert (await get(tasks, user_token, waiting_id)).state == pb.TASK_STATE_CANCELLED


async def test_a_task_no_agent_offers_stays_queued_with_a_waiting_reason(
    rest: httpx.AsyncClient, tasks: TaskServiceStub, user_token: str
) -> None:
    kind = f"tests.unoffered-{uuid.uuid4().hex[:8]}"
    task_id = (await create(tasks, user_token, type=kind)).task.task_id
    seen: list[pb.Task] = []

    async def explained() -> bool:
        seen[:] = [await get(tasks, user_token, task_id)]
        return bool(seen[0].waiting_reason)

    await wait_for(explained, timeout=30, interval=0.1, message=f"a waiting reason for {task_id}")
    assert seen[0].state == pb.TASK_STATE_QUEUED
    assert seen[0].waiting_reason == f"no online agent offers {kind}"
    reply = await rest.get(f"/v1/tasks/{task_id}")
    assert reply.json()["task"]["waiting_reason"] == f"no online agent offers {kind}"
    assert reply.json()["task"]["state"] == "TASK_STATE_QUEUED"


async def test_bad_input_is_refused_field_by_field(
    rest: httpx.AsyncClient, tasks: TaskServiceStub, user_token: str
) -> None:
    error = await failure(
        tasks.CreateTask(summarize_request(priority=7), metadata=bearer(user_token))
    )
    assert set(field_violations(error)) == {"priority"}
    oversized = pb.CreateTaskRequest(type=SUMMARIZE, payload=struct(text="x" * 70_000))
    error = await failure(tasks.CreateTask(oversized, metadata=bearer(user_token)))
    assert set(field_violations(error)) == {"payload"}
    error = await failure(
        tasks.GetTask(pb.GetTaskRequest(task_id="12345"), metadata=bearer(user_token))
    )
    assert set(field_violations(error)) == {"task_id"}
    error = await failure(
        tasks.CancelTask(pb.CancelTaskRequest(task_id="not-a-uuid"), metadata=bearer(user_token))
    )
    assert set(field_violations(error)) == {"task_id"}

    for reply, field in (
        (await rest.post("/v1/tasks", json={"type": SUMMARIZE, "priority": 7}), "priority"),
        (
            await rest.post(
                "/v1/tasks", json={"type": SUMMARIZE, "payload": {"text": "x" * 70_000}}
            ),
            "payload",
        ),
        (await rest.get("/v1/tasks/not-a-uuid"), "task_id"),
    ):
        assert reply.status_code == 400, reply.text
        body = reply.json()
        assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert [v["field"] for v in body["details"][0]["field_violations"]] == [field]


async def test_a_repeated_idempotency_key_gives_the_original_task(
    tasks: TaskServiceStub, rest: httpx.AsyncClient, user_token: str
) -> None:
    key = f"summary-{uuid.uuid4()}"
    first = await tasks.CreateTask(
        summarize_request(idempotency_key=key), metadata=bearer(user_token), timeout=TIMEOUT
    )
    again = await tasks.CreateTask(
        pb.CreateTaskRequest(type=SUMMARIZE, payload=struct(text="other"), idempotency_key=key),
        metadata=bearer(user_token),
        timeout=TIMEOUT,
    )
    over_rest = await rest.post(
        "/v1/tasks", json={"type": SUMMARIZE, "payload": {"text": "x"}, "idempotency_key": key}
    )

    assert first.created is True
    assert again.created is False
    assert again.task.task_id == first.task.task_id
    assert dict(again.task.payload)["text"] == TEXT
    assert over_rest.status_code == 200, over_rest.text
    assert over_rest.json()["created"] is False
    assert over_rest.json()["task"]["task_id"] == first.task.task_id
    # One task ran, once.
    done = await _finished(tasks, user_token, first.task.task_id)
    assert done.state == pb.TASK_STATE_SUCCEEDED, done
    assert [a.number for a in done.attempts] == [1]


async def _finished(tasks: TaskServiceStub, token: str, task_id: str) -> pb.Task:
    seen: list[pb.Task] = []
    final = {pb.TASK_STATE_SUCCEEDED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELLED}

    async def ended() -> bool:
        seen[:] = [await get(tasks, token, task_id)]
        return seen[0].state in final

    await wait_for(ended, timeout=RUN_TIMEOUT, interval=0.5, message=f"task {task_id} finished")
    return seen[0]
