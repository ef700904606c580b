"""A stand-in edge serving the task, agent, coordinator and resource services (real grpc.aio).

Shared by the client's tests (``tests/client/test_tasks.py``) and the CLI's
(``tests/cli/test_cli_tasks.py``). Tasks live in memory; a task's life in ``WatchTask`` is
scripted by its type (see :class:`Tasks`). Statuses are built with ``sutazai.runtime.faults``,
as the real services build theirs; the access token says the caller's role (``Bearer
operator`` is an operator, anything else a user).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.agents.v1 import agent_service_pb2_grpc as agents_grpc
from sutazai.auth.v1 import auth_service_pb2_grpc as auth_grpc
from sutazai.coordinator.v1 import coordinator_service_pb2 as coord_pb
from sutazai.coordinator.v1 import coordinator_service_pb2_grpc as coord_grpc
from sutazai.resources.v1 import resource_service_pb2 as res_pb
from sutazai.resources.v1 import resource_service_pb2_grpc as res_grpc
from sutazai.runtime import faults
from sutazai.tasks.v1 import task_service_pb2 as pb
from sutazai.tasks.v1 import task_service_pb2_grpc as pb_grpc
from tests.client.test_streams import Refresher

FINAL = {pb.TASK_STATE_SUCCEEDED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELLED}
DEAD_ID = "00000000-0000-4000-8000-00000000dead"
"""The one dead-lettered task the stand-in starts with."""


def token_of(context: grpc.aio.ServicerContext) -> str:
    return str(dict(context.invocation_metadata() or ()).get("authorization", ""))


def is_operator(context: grpc.aio.ServicerContext) -> bool:
    return token_of(context) == "Bearer operator"


async def refuse(context: grpc.aio.ServicerContext, fault: faults.RpcStatusError) -> None:
    """Abort as a mesh service does: with the rich status."""
    await context.abort_with_status(fault.to_status())


async def operators_only(context: grpc.aio.ServicerContext) -> None:
    if not is_operator(context):
        await refuse(
            context,
            faults.permission_denied(
                "needs the operator role", reason="ROLE_REQUIRED", domain="sutazai.auth"
            ),
        )


def at(seconds: int) -> Timestamp:
    return Timestamp(seconds=1_768_478_400 + seconds)


def copy(task: pb.Task, **changes: object) -> pb.Task:
    changed = pb.Task()
    changed.CopyFrom(task)
    for name, value in changes.items():
        if isinstance(value, struct_pb2.Struct | status_pb2.Status | Timestamp):
            getattr(changed, name).CopyFrom(value)
        else:
            setattr(changed, name, value)
    return changed


def result_of(text: str) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update({"summary": text})
    return result


class Tasks(pb_grpc.TaskServiceServicer):
    """An in-memory task service.

    ``WatchTask`` scripts a task's life by its type: ``text.summarize`` goes QUEUED, RUNNING,
    SUCCEEDED (the first call of a task ends early after a keep-alive, as a draining instance
    does, so the client must reconnect); ``always.fail`` goes QUEUED then FAILED; any other
    type stays as it is until cancelled.
    """

    def __init__(self) -> None:
        self.tasks: dict[str, pb.Task] = {}
        self.requests: list[object] = []
        self.tokens: list[str] = []
        self.watch_calls: dict[str, int] = {}
        self.changes: asyncio.Queue[pb.Task] = asyncio.Queue()
        self.watch_tasks_opened = 0
        dead = pb.Task(
            task_id=DEAD_ID,
            type="always.fail",
            state=pb.TASK_STATE_FAILED,
            attempt=3,
            max_attempts=3,
            dead_lettered=True,
            owner_id="u-1",
            error=status_pb2.Status(code=13, message="handler raised RuntimeError"),
            created_at=at(0),
            finished_at=at(30),
        )
        self.tasks[DEAD_ID] = dead

    def _seen(self, request: object, context: grpc.aio.ServicerContext) -> None:
        self.requests.append(request)
        self.tokens.append(token_of(context))

    async def _find(self, task_id: str, context: grpc.aio.ServicerContext) -> pb.Task:
        try:
            uuid.UUID(task_id)
        except ValueError:
            await refuse(context, faults.invalid_argument({"task_id": "must be a UUID"}))
        found = self.tasks.get(task_id)
        if found is None:
            await refuse(context, faults.not_found("task", task_id))
        assert found is not None
        return found

    def _store(self, task: pb.Task) -> pb.Task:
        self.tasks[task.task_id] = task
        self.changes.put_nowait(task)
        return task

    async def CreateTask(  # noqa: N802
        self, request: pb.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTaskResponse:
        self._seen(request, context)
        violations: dict[str, str] = {}
        if not request.type:
            violations["type"] = "must not be empty"
        if request.priority > 3:
            violations["priority"] = "must be 0 to 3"
        if violations:
            await refuse(context, faults.invalid_argument(violations))
        if request.idempotency_key:
            for task in self.tasks.values():
                if task.idempotency_key == request.idempotency_key:
                    return pb.CreateTaskResponse(task=task, created=False)
        number = len(self.tasks)
        task = pb.Task(
            task_id=f"00000000-0000-4000-8000-{number:012d}",
            type=request.type,
            payload=request.payload,
            priority=request.priority,
            required_capabilities=request.required_capabilities,
            timeout_seconds=request.timeout_seconds or 300,
            idempotency_key=request.idempotency_key,
            owner_id="u-1",
            state=pb.TASK_STATE_QUEUED,
            max_attempts=request.max_attempts or 3,
            created_at=at(number),
            queued_at=at(number),
        )
        return pb.CreateTaskResponse(task=self._store(task), created=True)

    async def GetTask(  # noqa: N802
        self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTaskResponse:
        self._seen(request, context)
        return pb.GetTaskResponse(task=await self._find(request.task_id, context))

    async def ListTasks(  # noqa: N802
        self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTasksResponse:
        self._seen(request, context)
        if request.all_users:
            await operators_only(context)
        chosen = [
            t
            for t in sorted(self.tasks.values(), key=lambda t: t.task_id, reverse=True)
            if (not request.states or t.state in request.states)
            and (not request.type or t.type == request.type)
        ]
        start = int(request.page_token or 0)
        end = start + (request.page_size or 20)
        return pb.ListTasksResponse(
            tasks=chosen[start:end], next_page_token=str(end) if end < len(chosen) else ""
        )

    async def CancelTask(  # noqa: N802
        self, request: pb.CancelTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelTaskResponse:
        self._seen(request, context)
        task = await self._find(request.task_id, context)
        if task.state in FINAL:
            await refuse(context, faults.failed_precondition("the task has finished"))
        cancelled = copy(
            task,
            state=pb.TASK_STATE_CANCELLED,
            error=status_pb2.Status(code=1, message=request.reason or "cancelled"),
        )
        return pb.CancelTaskResponse(task=self._store(cancelled))

    async def WatchTask(  # noqa: N802
        self, request: pb.WatchTaskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchTaskResponse]:
        self._seen(request, context)
        task = await self._find(request.task_id, context)
        calls = self.watch_calls[task.task_id] = self.watch_calls.get(task.task_id, 0) + 1
        yield pb.WatchTaskResponse(task=task)
        if task.type == "text.summarize" and task.state not in FINAL:
            if calls == 1:
                yield pb.WatchTaskResponse(task=task)  # a keep-alive: the task again
                return  # the instance drains: the client must reconnect
            running = self._store(
                copy(task, state=pb.TASK_STATE_RUNNING, attempt=1, agent_id="text.1")
            )
            yield pb.WatchTaskResponse(task=running)
            done = self._store(
                copy(running, state=pb.TASK_STATE_SUCCEEDED, result=result_of("short"))
            )
            yield pb.WatchTaskResponse(task=done)
        elif task.type == "always.fail" and task.state not in FINAL:
            failed = self._store(
                copy(
                    task,
                    state=pb.TASK_STATE_FAILED,
                    attempt=3,
                    error=status_pb2.Status(code=13, message="handler raised RuntimeError"),
                )
            )
            yield pb.WatchTaskResponse(task=failed)
        # Stay open: the client ends the stream itself after a final state.
        await asyncio.Event().wait()

    async def WatchTasks(  # noqa: N802
        self, request: pb.WatchTasksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchTasksResponse]:
        self._seen(request, context)
        if request.all_users:
            await operators_only(context)
        self.watch_tasks_opened += 1
        while not self.changes.empty():
            self.changes.get_nowait()  # what the snapshot shows already
        snapshot = sorted(self.tasks.values(), key=lambda t: t.task_id, reverse=True)
        for task in snapshot[: request.snapshot_size or 50]:
            yield pb.WatchTasksResponse(task=task, snapshot=True)
        yield pb.WatchTasksResponse()  # a keep-alive
        while True:
            yield pb.WatchTasksResponse(task=await self.changes.get())

    async def ListDeadLetters(  # noqa: N802
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        self._seen(request, context)
        await operators_only(context)
        return pb.ListDeadLettersResponse(tasks=[t for t in self.tasks.values() if t.dead_lettered])

    async def RequeueDeadLetter(  # noqa: N802
        self, request: pb.RequeueDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequeueDeadLetterResponse:
        self._seen(request, context)
        await operators_only(context)
        task = await self._find(request.task_id, context)
        if not task.dead_lettered:
            await refuse(context, faults.failed_precondition("the task is not a dead letter"))
        queued = copy(task, state=pb.TASK_STATE_QUEUED, dead_lettered=False, attempt=0)
        queued.ClearField("error")
        return pb.RequeueDeadLetterResponse(task=self._store(queued))


def agent(
    agent_id: str, running: int, state: int = agents_pb.AGENT_STATE_ONLINE
) -> agents_pb.Agent:
    return agents_pb.Agent(
        heartbeat=agents_pb.AgentHeartbeat(
            agent_id=agent_id,
            capabilities=["text.generate", "text.summarize"],
            max_concurrency=4,
            running=running,
            state=state,  # type: ignore[arg-type]
            succeeded=12,
            failed=1,
            heartbeat_at=at(60),
        ),
        state=state,  # type: ignore[arg-type]
        load=running / 4,
    )


class Agents(agents_grpc.AgentServiceServicer):
    """Two text agents; ``WatchAgents`` sends them, a keep-alive, then one change."""

    def __init__(self) -> None:
        self.agents = [agent("text.1", 1), agent("text.2", 0)]

    async def ListAgents(  # noqa: N802
        self, request: agents_pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.ListAgentsResponse:
        return agents_pb.ListAgentsResponse(agents=self.agents)

    async def GetAgent(  # noqa: N802
        self, request: agents_pb.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.GetAgentResponse:
        for found in self.agents:
            if found.heartbeat.agent_id == request.agent_id:
                return agents_pb.GetAgentResponse(agent=found)
        await refuse(context, faults.not_found("agent", request.agent_id))
        raise AssertionError  # pragma: no cover - abort raises

    async def WatchAgents(  # noqa: N802
        self, request: agents_pb.WatchAgentsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agents_pb.WatchAgentsResponse]:
        for found in self.agents:
            yield agents_pb.WatchAgentsResponse(agent=found, snapshot=True)
        yield agents_pb.WatchAgentsResponse()  # a keep-alive
        yield agents_pb.WatchAgentsResponse(agent=agent("text.2", 0, agents_pb.AGENT_STATE_OFFLINE))
        await asyncio.Event().wait()


class Coordinator(coord_grpc.CoordinatorServiceServicer):
    """A strategy that can be changed (operators), fixed stats and streams."""

    def __init__(self) -> None:
        self.strategy: coord_pb.Strategy.ValueType = coord_pb.STRATEGY_ROUND_ROBIN

    async def GetStrategy(  # noqa: N802
        self, request: coord_pb.GetStrategyRequest, context: grpc.aio.ServicerContext
    ) -> coord_pb.GetStrategyResponse:
        await operators_only(context)
        return coord_pb.GetStrategyResponse(strategy=self.strategy)

    async def SetStrategy(  # noqa: N802
        self, request: coord_pb.SetStrategyRequest, context: grpc.aio.ServicerContext
    ) -> coord_pb.SetStrategyResponse:
        await operators_only(context)
        if request.strategy == coord_pb.STRATEGY_UNSPECIFIED:
            await refuse(context, faults.invalid_argument({"strategy": "must be set"}))
        self.strategy = request.strategy
        return coord_pb.SetStrategyResponse(strategy=self.strategy)

    async def GetStats(  # noqa: N802
        self, request: coord_pb.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> coord_pb.GetStatsResponse:
        await operators_only(context)
        return coord_pb.GetStatsResponse(
            queued_by_priority=[4, 2, 1, 0],
            queued_by_type={"text.summarize": 6, "text.generate": 1},
            in_flight=3,
            succeeded_last_minute=42,
            failed_last_minute=1,
            succeeded_total=1234,
            failed_total=17,
            dead_letters=2,
            strategy=self.strategy,
        )

    async def ListStreams(  # noqa: N802
        self, request: coord_pb.ListStreamsRequest, context: grpc.aio.ServicerContext
    ) -> coord_pb.ListStreamsResponse:
        await operators_only(context)
        return coord_pb.ListStreamsResponse(
            streams=[
                coord_pb.StreamInfo(
                    name="SUTAZAI_TASKS",
                    messages=7,
                    bytes=2048,
                    consumers=[coord_pb.ConsumerInfo(name="coordinator", pending=7)],
                )
            ]
        )


class Resources(res_grpc.ResourceServiceServicer):
    """One CPU resource, its policy and one lease."""

    async def GetResources(  # noqa: N802
        self, request: res_pb.GetResourcesRequest, context: grpc.aio.ServicerContext
    ) -> res_pb.GetResourcesResponse:
        return res_pb.GetResourcesResponse(
            resources=[
                res_pb.Resource(
                    resource_type=res_pb.RESOURCE_TYPE_CPU, unit="cores", capacity=8, allocated=2
                )
            ]
        )

    async def ListAllocations(  # noqa: N802
        self, request: res_pb.ListAllocationsRequest, context: grpc.aio.ServicerContext
    ) -> res_pb.ListAllocationsResponse:
        lease = res_pb.Allocation(
            allocation_id="a-1", holder="text.1", resource_type=res_pb.RESOURCE_TYPE_CPU, amount=2
        )
        chosen = [lease] if request.holder in {"", "text.1"} else []
        return res_pb.ListAllocationsResponse(allocations=chosen)

    async def GetPolicies(  # noqa: N802
        self, request: res_pb.GetPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> res_pb.GetPoliciesResponse:
        return res_pb.GetPoliciesResponse(
            policies=[res_pb.Policy(resource_type=res_pb.RESOURCE_TYPE_CPU, max_total_percent=80)]
        )


class WorkEdge:
    """The stand-in edge and its services."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        tasks: Tasks,
        agents: Agents,
        coordinator: Coordinator,
    ) -> None:
        self.server = server
        self.port = port
        self.tasks = tasks
        self.agents = agents
        self.coordinator = coordinator


@asynccontextmanager
async def work_edge() -> AsyncIterator[WorkEdge]:
    """The stand-in edge on a free loopback port, stopped on the way out."""
    tasks, agents, coordinator = Tasks(), Agents(), Coordinator()
    server = grpc.aio.server()
    pb_grpc.add_TaskServiceServicer_to_server(tasks, server)
    agents_grpc.add_AgentServiceServicer_to_server(agents, server)
    coord_grpc.add_CoordinatorServiceServicer_to_server(coordinator, server)
    res_grpc.add_ResourceServiceServicer_to_server(Resources(), server)
    auth_grpc.add_AuthServiceServicer_to_server(Refresher(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield WorkEdge(server, port, tasks, agents, coordinator)
    finally:
        await server.stop(grace=None)
