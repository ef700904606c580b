"""Agents failing, and agents attacking, on the session mesh: nobody is played.

Two instances of the chaos agent (:mod:`tests.tasks.chaos_agent`, principal ``chaos``) run under a
supervisor of the module's own, as ``sutazai up`` runs an agent; tasks are created and followed
through Envoy (gRPC and REST); the real coordinator assigns them and the real task service keeps
the record. What issue 10 asks to see:

- SIGKILL an agent mid-task: the task is redelivered to another agent and succeeds at attempt 2.
- A handler that always fails ends FAILED in the dead-letter list after the configured attempts;
  operators (not users) list and re-queue it, and it runs again.
- A compromised agent principal cannot change the state of a task it was not assigned, nor of an
  attempt it does not run, and cannot read another agent's work.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable

import grpc
import httpx
import nats.errors
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from nats.aio.client import Client

from sutazai.runtime.jetstream import WORK_STREAM, work_consumer, work_subject
from sutazai.runtime.settings import MeshSettings
from sutazai.tasks.v1 import dispatch_pb2
from sutazai.tasks.v1 import task_service_pb2 as pb
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.auth.helpers import bearer, failure
from tests.harness.mesh import running
from tests.harness.waiting import wait_for
from tests.supervisor.test_nats_permissions import connected
from tests.tasks.chaos import ChaosAgents, running_chaos_agents
from tests.tasks.chaos_agent import NAME
from tests.tasks.helpers import TIMEOUT, get, settled, struct

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 90.0
"""A task's whole life here, on a loaded machine: kill, restart, back-off, second attempt."""


@pytest.fixture(scope="module")
async def chaos(
    task_mesh: MeshSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ChaosAgents]:
    """``chaos.1`` and ``chaos.2``, healthy (their heartbeats are their own)."""
    directory = tmp_path_factory.mktemp("chaos")
    async with running_chaos_agents(task_mesh, directory) as agents:
        yield agents


async def until(
    tasks: TaskServiceStub,
    token: str,
    task_id: str,
    predicate: Callable[[pb.Task], bool],
    what: str,
    timeout: float = RUN_TIMEOUT,  # noqa: ASYNC109
) -> pb.Task:
    """The task, once ``predicate`` holds for it (GetTask through Envoy)."""
    seen: list[pb.Task] = []

    async def holds() -> bool:
        seen[:] = [await get(tasks, token, task_id)]
        return predicate(seen[0])

    try:
        await wait_for(holds, timeout=timeout, interval=0.1, message=f"task {task_id}: {what}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last seen: {seen[-1] if seen else None}") from exc
    return seen[0]


def attempts_of(task: pb.Task) -> list[tuple[int, str, int]]:
    return [(a.number, a.agent_id, a.state) for a in task.attempts]


def the_other(agent_id: str) -> str:
    return f"{NAME}.2" if agent_id == f"{NAME}.1" else f"{NAME}.1"


# Killed mid-task ------------------------------------------------------------------------------


async def test_a_task_of_an_agent_killed_mid_task_succeeds_on_the_other_at_attempt_2(
    chaos: ChaosAgents, tasks: TaskServiceStub, rest: httpx.AsyncClient, user_token: str
) -> None:
    created = await tasks.CreateTask(
        pb.CreateTaskRequest(type="chaos.hold", timeout_seconds=120, max_attempts=3),
        metadata=bearer(user_token),
        timeout=TIMEOUT,
    )
    task_id = created.task.task_id
    running_task = await until(
        tasks, user_token, task_id, lambda t: t.state == pb.TASK_STATE_RUNNING, "RUNNING"
    )
    victim = running_task.agent_id
    assert victim in {f"{NAME}.1", f"{NAME}.2"}, running_task
    await wait_for(
        lambda: chaos.started(task_id) == [(1, victim)], timeout=10, message="the handler runs"
    )

    # Its pid from the supervisor that runs it, as `sutazai status` shows it.
    instance = victim.split(".")[1]
    pid = chaos.pid(instance)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    # The supervisor restarts the slot under the same instance id; the attempt the killed
    # process held is lost, and the next one goes to the other instance.
    other = the_other(victim)
    await wait_for(
        lambda: (2, other) in chaos.started(task_id),
        timeout=RUN_TIMEOUT,
        message=f"attempt 2 running on {other}",
    )
    chaos.release(task_id)
    done = await until(
        tasks, user_token, task_id, lambda t: t.state == pb.TASK_STATE_SUCCEEDED, "SUCCEEDED"
    )

    assert done.attempt == 2
    assert done.agent_id == other
    assert attempts_of(done) == [
        (1, victim, pb.TASK_STATE_FAILED),
        (2, other, pb.TASK_STATE_SUCCEEDED),
    ]
    assert done.attempts[0].error.code == code_pb2.UNAVAILABLE
    assert victim in done.attempts[0].error.message
    result = json_format.MessageToDict(done.result)
    assert (result["agent"], result["attempt"]) == (other, 2)
    # One run reached its end: the one whose result is stored.
    assert chaos.completions(task_id) == [(2, other, result["nonce"])]
    assert not running(pid)

    over_rest = await rest.get(f"/v1/tasks/{task_id}")
    assert over_rest.status_code == 200, over_rest.text
    body = over_rest.json()["task"]
    assert (body["state"], body["attempt"], body["agent_id"]) == ("TASK_STATE_SUCCEEDED", 2, other)
    # The slot is back, for the tests that follow.
    await wait_for(
        lambda: chaos.pid(instance) not in (None, pid),
        timeout=60,
        message=f"{victim} restarted",
    )


# Dead letters -----------------------------------------------------------------------------------


async def test_a_handler_that_always_fails_is_dead_lettered_then_requeued_by_an_operator(
    chaos: ChaosAgents,
    tasks: TaskServiceStub,
    rest: httpx.AsyncClient,
    user_token: str,
    operator_token: str,
) -> None:
    created = await rest.post("/v1/tasks", json={"type": "chaos.fail", "max_attempts": 2})
    assert created.status_code == 200, created.text
    task_id = created.json()["task"]["task_id"]

    failed = await until(
        tasks, user_token, task_id, lambda t: t.state == pb.TASK_STATE_FAILED, "FAILED"
    )
    reason = "RuntimeError: chaos.fail refuses attempt 2"
    assert failed.dead_lettered
    assert (failed.error.code, failed.error.message) == (code_pb2.UNKNOWN, reason)
    assert failed.attempt == 2
    assert [(a.number, a.state) for a in failed.attempts] == [
        (1, pb.TASK_STATE_FAILED),
        (2, pb.TASK_STATE_FAILED),
    ]
    assert failed.attempts[0].error.message == "RuntimeError: chaos.fail refuses attempt 1"
    assert [attempt for attempt, _ in chaos.started(task_id)] == [1, 2]

    # Operators see it, with the reason, over gRPC and REST.
    listed = await tasks.ListDeadLetters(
        pb.ListDeadLettersRequest(page_size=100), metadata=bearer(operator_token), timeout=TIMEOUT
    )
    (dead,) = [t for t in listed.tasks if t.task_id == task_id]
    assert (dead.state, dead.error.message) == (pb.TASK_STATE_FAILED, reason)
    operator = {"authorization": f"Bearer {operator_token}"}
    over_rest = await rest.get("/v1/dead-letters", params={"page_size": 100}, headers=operator)
    assert over_rest.status_code == 200, over_rest.text
    (dead_json,) = [t for t in over_rest.json()["tasks"] if t["task_id"] == task_id]
    assert dead_json["error"]["message"] == reason
    assert dead_json["dead_lettered"] is True

    # A user may neither list nor re-queue (the task is theirs, the dead-letter list is not).
    for call in (
        tasks.ListDeadLetters(pb.ListDeadLettersRequest(), metadata=bearer(user_token)),
        tasks.RequeueDeadLetter(
            pb.RequeueDeadLetterRequest(task_id=task_id), metadata=bearer(user_token)
        ),
    ):
        assert (await failure(call)).code() is grpc.StatusCode.PERMISSION_DENIED
    assert (await rest.get("/v1/dead-letters")).status_code == 403
    assert (await rest.post(f"/v1/dead-letters/{task_id}:requeue", json={})).status_code == 403
    assert (await get(tasks, user_token, task_id)).state == pb.TASK_STATE_FAILED

    # The operator fixes the cause and re-queues it: it runs again, and succeeds.
    chaos.heal(task_id)
    requeued = await rest.post(f"/v1/dead-letters/{task_id}:requeue", json={}, headers=operator)
    assert requeued.status_code == 200, requeued.text
    assert requeued.json()["task"]["state"] in {"TASK_STATE_PENDING", "TASK_STATE_QUEUED"}
    assert requeued.json()["task"]["attempt"] == 3
    assert requeued.json()["task"]["max_attempts"] == 4

    done = await until(
        tasks, user_token, task_id, lambda t: t.state == pb.TASK_STATE_SUCCEEDED, "SUCCEEDED"
    )
    assert done.attempt == 3
    assert not done.dead_lettered
    assert [(a.number, a.state) for a in done.attempts][-1] == (3, pb.TASK_STATE_SUCCEEDED)
    assert json_format.MessageToDict(done.result)["attempt"] == 3
    after = await tasks.ListDeadLetters(
        pb.ListDeadLettersRequest(page_size=100), metadata=bearer(operator_token), timeout=TIMEOUT
    )
    assert task_id not in {t.task_id for t in after.tasks}


# A compromised agent ----------------------------------------------------------------------------


def forged(task_id: str, attempt: int, agent_id: str, **event: object) -> bytes:
    report = dispatch_pb2.TaskReport(task_id=task_id, attempt=attempt, agent_id=agent_id, **event)  # type: ignore[arg-type]
    report.sent_at.GetCurrentTime()
    return report.SerializeToString()


async def test_a_compromised_agent_cannot_change_a_task_it_does_not_run(
    chaos: ChaosAgents,
    task_mesh: MeshSettings,
    tasks: TaskServiceStub,
    user_token: str,
    admin_nats: Client,
) -> None:
    created = await tasks.CreateTask(
        pb.CreateTaskRequest(type="chaos.hold", timeout_seconds=120),
        metadata=bearer(user_token),
        timeout=TIMEOUT,
    )
    task_id = created.task.task_id
    running_task = await until(
        tasks, user_token, task_id, lambda t: t.state == pb.TASK_STATE_RUNNING, "RUNNING"
    )
    owner = running_task.agent_id
    sibling = the_other(owner)
    lie = struct(answer="forged")
    gone = dispatch_pb2.TaskFailed(
        error=status_pb2.Status(code=code_pb2.UNAVAILABLE, message="forged"),
        retryable=True,
    )
    last_seq = 0
    events: list[dict[str, object]] = [
        {"succeeded": {"result": lie}},
        {"failed": gone},
        {"cancelled": {}},
    ]

    # Another agent's principal (the TypeScript agent's): it may publish only its own reports.
    async with connected(task_mesh, "polyglot") as intruder:
        js = intruder.client.jetstream(timeout=5.0)
        for event in events:
            ack = await js.publish(
                "sutazai.reports.agent.polyglot.1", forged(task_id, 1, owner, **event)
            )
            last_seq = max(last_seq, ack.seq)
        for subject in (
            f"sutazai.reports.agent.{owner}",
            "sutazai.reports.coordinator",
            "sutazai.reports.tasks",
            f"sutazai.control.{owner}",
        ):
            assert await intruder.publish_denied(subject), subject
        # Nor can it read the owner's work.
        assert await intruder.subscribe_denied(work_subject(owner))
        with pytest.raises(nats.errors.Error):
            await intruder.client.jetstream(timeout=2.0).pull_subscribe(
                work_subject(owner), durable=work_consumer(owner), stream=WORK_STREAM
            )

    # The owner's own principal, from its sibling instance or with a forged attempt, or posing as
    # the coordinator: none of it is the attempt that runs.
    async with connected(task_mesh, NAME) as compromised:
        js = compromised.client.jetstream(timeout=5.0)
        attempts: list[tuple[str, int, dict[str, object]]] = [
            (f"sutazai.reports.agent.{sibling}", 1, {"succeeded": {"result": lie}}),
            (f"sutazai.reports.agent.{sibling}", 1, {"failed": gone}),
            (f"sutazai.reports.agent.{owner}", 2, {"succeeded": {"result": lie}}),
            (f"sutazai.reports.agent.{owner}", 7, {"failed": gone}),
            (
                f"sutazai.reports.agent.{owner}",
                1,
                {"requeued": dispatch_pb2.TaskRequeued(next_attempt=2)},
            ),
            (f"sutazai.reports.agent.{owner}", 1, {"dead_lettered": {}}),
        ]
        for subject, attempt, event in attempts:
            ack = await js.publish(subject, forged(task_id, attempt, owner, **event))
            last_seq = max(last_seq, ack.seq)
        assert compromised.errors == []
        assert await compromised.subscribe_denied(work_subject(sibling))
        assert await compromised.publish_denied("sutazai.reports.coordinator")

    await settled(admin_nats.jetstream(), last_seq)
    still = await get(tasks, user_token, task_id)
    assert (still.state, still.attempt, still.agent_id) == (pb.TASK_STATE_RUNNING, 1, owner)
    assert not still.HasField("result")
    assert attempts_of(still) == [(1, owner, pb.TASK_STATE_RUNNING)]

    # The real run finishes, once, with its own result; the coordinator queued no other attempt.
    chaos.release(task_id)
    done = await until(
        tasks, user_token, task_id, lambda t: t.state == pb.TASK_STATE_SUCCEEDED, "SUCCEEDED"
    )
    result = json_format.MessageToDict(done.result)
    assert attempts_of(done) == [(1, owner, pb.TASK_STATE_SUCCEEDED)]
    assert chaos.completions(task_id) == [(1, owner, result["nonce"])]
