"""Calling the task service and playing the coordinator and agents (as NATS ``admin``)."""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf import struct_pb2
from google.rpc import status_pb2
from nats.js import JetStreamContext

from sutazai.services.tasks.records import NewTask
from sutazai.tasks.v1 import dispatch_pb2
from sutazai.tasks.v1 import task_service_pb2 as pb
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.auth.helpers import bearer
from tests.harness.waiting import wait_for

TIMEOUT = 10.0
NOBODY_RUNS = "tests.nobody-runs-this"
"""A task type no agent offers: its dispatch stays on the stream (nothing assigns it)."""
COORDINATOR = "sutazai.reports.coordinator"


def new_task(owner: str = "owner-1", key: str = "") -> NewTask:
    """A task to store directly (no agent runs its type)."""
    return NewTask(
        task_id=uuid.uuid4(),
        owner_id=owner,
        type=NOBODY_RUNS,
        payload=b"",
        priority=1,
        required_capabilities=(),
        resources=(),
        timeout_seconds=60,
        idempotency_key=key,
        max_attempts=3,
    )


def agent_subject(agent_id: str) -> str:
    """Where the agent instance ``<name>.<instance>`` publishes its reports."""
    return f"sutazai.reports.agent.{agent_id}"


def struct(**fields: Any) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(fields)
    return value


async def create(tasks: TaskServiceStub, token: str, **fields: Any) -> pb.CreateTaskResponse:
    fields.setdefault("type", NOBODY_RUNS)
    reply: pb.CreateTaskResponse = await tasks.CreateTask(
        pb.CreateTaskRequest(**fields), metadata=bearer(token), timeout=TIMEOUT
    )
    return reply


async def get(tasks: TaskServiceStub, token: str, task_id: str) -> pb.Task:
    reply = await tasks.GetTask(
        pb.GetTaskRequest(task_id=task_id), metadata=bearer(token), timeout=TIMEOUT
    )
    return reply.task


async def report(
    js: JetStreamContext, subject: str, task_id: str, attempt: int, agent_id: str = "", **event: Any
) -> int:
    """Publish a ``TaskReport``; its sequence in ``SUTAZAI_REPORTS``."""
    message = dispatch_pb2.TaskReport(task_id=task_id, attempt=attempt, agent_id=agent_id, **event)
    message.sent_at.GetCurrentTime()
    ack = await js.publish(subject, message.SerializeToString(), timeout=TIMEOUT)
    return int(ack.seq)


async def settled(js: JetStreamContext, seq: int) -> None:
    """Wait until the task service acknowledged every report up to ``seq``."""

    async def acknowledged() -> bool:
        info = await js.consumer_info("SUTAZAI_REPORTS", "tasks")
        return info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= seq

    await wait_for(acknowledged, timeout=15, interval=0.05, message=f"report {seq} applied")


async def state_becomes(
    tasks: TaskServiceStub, token: str, task_id: str, state: pb.TaskState.ValueType
) -> pb.Task:
    """Wait until the task is in ``state``; the task then."""
    seen: list[pb.Task] = []

    async def reached() -> bool:
        seen[:] = [await get(tasks, token, task_id)]
        return seen[0].state == state

    await wait_for(reached, timeout=15, interval=0.05, message=f"task {task_id} {state}")
    return seen[0]


def failure_status(code: int, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code, message=message)
