"""Restarts and floods on a mesh of this module's own (the session mesh is not disturbed).

A supervisor runs NATS, PostgreSQL, Redis, the gateway, Envoy, the services of the task system
(auth, resources, tasks, coordinator) and two instances of the chaos agent
(:mod:`tests.tasks.chaos_agent`), as ``sutazai up`` would; the per-user limit of expensive calls
and the task queue bound are small and real here. What issue 10 asks to see:

- Restart NATS and then every service while tasks are queued: nothing is lost and nothing runs
  twice to completion.
- (Attacker pass) a client flooding CreateTask gets RESOURCE_EXHAUSTED (its per-user limit, the
  queue bound, which concurrent creates cannot exceed), and the mesh keeps answering everyone
  else; a compromised agent flooding reports about attempts nobody holds stalls no other task.

A restart is what the supervisor does to a child that exits: NATS is killed (SIGKILL, its
JetStream data is fsynced before anything is acknowledged), each service and agent is asked to
stop (SIGTERM: it drains, exits, and the supervisor starts it again).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from sutazai.ops.supervisor import Supervisor
from sutazai.ops.supervisor.components import (
    agent_components,
    envoy_component,
    gateway_component,
    infrastructure_components,
    service_components,
)
from sutazai.ops.supervisor.environment import child_environment
from sutazai.ops.supervisor.probes import agent_heartbeat_since, nats_connect, registry_has
from sutazai.runtime.deployment import load_catalog
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import envoy_admin_client
from sutazai.tasks.v1 import dispatch_pb2
from sutazai.tasks.v1 import task_service_pb2 as pb
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.auth.helpers import bearer, failure
from tests.harness.fixtures import new_account, signed_in
from tests.harness.mesh import (
    MeshPorts,
    build_settings,
    component_pid,
    mesh_agents,
    new_state_dir,
    remove_state_dir,
    supervised,
)
from tests.harness.waiting import wait_for
from tests.supervisor.test_nats_permissions import connected
from tests.tasks.chaos import INSTANCES, ChaosAgents, agent_id, chaos_component, component_name
from tests.tasks.chaos_agent import NAME

pytestmark = pytest.mark.integration

SERVICES = ("auth", "resources", "tasks", "coordinator")
"""The services of the task system (and sign-in); the others of the catalog are not needed."""
QUEUE_BOUND = 80
USER_BURST = 100
"""Expensive calls (CreateTask) one user may make at once; refilled at USER_RATE per second."""
USER_RATE = 2.0
TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class RestartMesh:
    settings: MeshSettings
    supervisor: Supervisor
    agents: ChaosAgents
    channel: grpc.aio.Channel

    @property
    def tasks(self) -> TaskServiceStub:
        return TaskServiceStub(self.channel)


def restart_settings(state_dir: Path) -> MeshSettings:
    settings = build_settings(state_dir, MeshPorts.pick())
    return settings.model_copy(
        update={
            "auth": settings.auth.model_copy(
                update={"user_rate_burst": USER_BURST, "user_rate_per_second": USER_RATE}
            ),
            "tasks": settings.tasks.model_copy(update={"queue_bound": QUEUE_BOUND}),
        }
    )


@pytest.fixture(scope="module")
async def restart_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RestartMesh]:
    """The module's own mesh, every service healthy in Envoy and both chaos agents beating."""
    state_dir = new_state_dir()
    traces = tmp_path_factory.mktemp("restart-chaos")
    try:
        settings = restart_settings(state_dir)
        env = child_environment(settings)
        catalog = [entry for entry in load_catalog() if entry.name in SERVICES]
        components = [
            *infrastructure_components(settings, env, agents=mesh_agents()),
            gateway_component(settings, env),
            envoy_component(settings, env),
            *service_components(settings, catalog, env),
            # Credentials files of the external agents (the chaos agent's among them).
            *agent_components(settings, [a for a in mesh_agents() if a.external], env),
            *(chaos_component(settings, instance, traces) for instance in INSTANCES),
        ]
        async with supervised(settings, components) as supervisor:
            await _routable(settings, {name for e in catalog for name in e.grpc_services})
            address = f"127.0.0.1:{settings.envoy.port}"
            async with grpc.aio.insecure_channel(address) as channel:
                yield RestartMesh(settings, supervisor, ChaosAgents(supervisor, traces), channel)
    finally:
        remove_state_dir(state_dir)


async def _routable(settings: MeshSettings, clusters: set[str]) -> None:
    async with envoy_admin_client(settings.envoy_admin_socket) as admin:

        async def healthy() -> bool:
            found = {
                line.split("::")[0]
                for line in (await admin.get("/clusters")).text.splitlines()
                if line.endswith("::health_flags::healthy")
            }
            return clusters <= found

        await wait_for(healthy, timeout=60, interval=0.1, message="services healthy in Envoy")


@pytest.fixture(scope="module")
async def restart_user(restart_mesh: RestartMesh) -> str:
    return await signed_in(restart_mesh.settings, await new_account(restart_mesh.settings, "user"))


async def _passes(probe: Callable[[], Awaitable[None]]) -> bool:
    try:
        await probe()
    except Exception:  # any failure of a probe only means "not yet"
        return False
    return True


async def restart(
    mesh: RestartMesh,
    component: str,
    healthy: Callable[[int], Awaitable[None]],
    sig: signal.Signals = signal.SIGTERM,
) -> None:
    """Send ``component``'s process ``sig``; return once the supervisor's new one is healthy."""
    old = component_pid(mesh.supervisor, component)
    assert old is not None, component
    os.kill(old, sig)
    await wait_for(
        lambda: component_pid(mesh.supervisor, component) not in (None, old),
        timeout=60,
        message=f"{component} restarted",
    )
    new = component_pid(mesh.supervisor, component)
    assert new is not None
    await wait_for(
        lambda: _passes(lambda: healthy(new)),
        timeout=60,
        interval=0.2,
        message=f"{component} healthy again",
    )


async def unfinished(tasks: TaskServiceStub, token: str, task_ids: list[str]) -> list[pb.Task]:
    """The tasks (of ``task_ids``) not finished yet."""
    final = {pb.TASK_STATE_SUCCEEDED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELLED}
    found = []
    for task_id in task_ids:
        reply = await tasks.GetTask(
            pb.GetTaskRequest(task_id=task_id), metadata=bearer(token), timeout=TIMEOUT
        )
        if reply.task.state not in final:
            found.append(reply.task)
    return found


async def test_restarting_nats_then_every_service_loses_nothing_and_runs_nothing_twice(
    restart_mesh: RestartMesh, restart_user: str
) -> None:
    mesh, tasks = restart_mesh, restart_mesh.tasks

    async def create(n: int) -> str:
        request = pb.CreateTaskRequest(
            type="chaos.record",
            payload=json_format.ParseDict({"seconds": 0.5, "n": n}, pb.CreateTaskRequest().payload),
            timeout_seconds=60,
            max_attempts=10,
        )
        reply = await tasks.CreateTask(request, metadata=bearer(restart_user), timeout=TIMEOUT)
        return str(reply.task.task_id)

    # Four run at once (two instances, two slots each), half a second each: most wait.
    task_ids = list(await asyncio.gather(*(create(n) for n in range(50))))
    assert len(set(task_ids)) == 50

    await restart(
        mesh, "nats", lambda _: nats_connect(mesh.settings), signal.SIGKILL
    )  # JetStream restores its streams and consumers from disk
    left_at_nats = len(await unfinished(tasks, restart_user, task_ids))
    # Accepted right after NATS came back (the outbox publishes whatever it could not).
    task_ids += await asyncio.gather(*(create(n) for n in range(50, 60)))

    left_at_services = len(await unfinished(tasks, restart_user, task_ids))
    for service in SERVICES:
        await restart(mesh, service, lambda pid, s=service: registry_has(mesh.settings, s, pid))
    for instance in INSTANCES:
        await restart(
            mesh,
            component_name(instance),
            lambda pid, i=instance: agent_heartbeat_since(mesh.settings, agent_id(i), pid),
        )

    started = time.monotonic()
    remaining: list[pb.Task] = []

    async def all_finished() -> bool:
        remaining[:] = await unfinished(tasks, restart_user, task_ids)
        return not remaining

    try:
        await wait_for(all_finished, timeout=180, interval=1.0, message="every task finished")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {[(t.task_id, t.state) for t in remaining]}") from exc
    # The restarts happened while tasks were queued: most of the first fifty at the NATS kill.
    assert left_at_nats >= 30, left_at_nats
    assert left_at_services > 0, left_at_services

    completions = mesh.agents.all_completions()
    for task_id in task_ids:
        reply = await tasks.GetTask(
            pb.GetTaskRequest(task_id=task_id), metadata=bearer(restart_user), timeout=TIMEOUT
        )
        task = reply.task
        assert task.state == pb.TASK_STATE_SUCCEEDED, task
        succeeded = [a for a in task.attempts if a.state == pb.TASK_STATE_SUCCEEDED]
        assert [a.number for a in succeeded] == [task.attempt], task
        result = json_format.MessageToDict(task.result)
        # Exactly one run of the handler reached its end: the one whose result is stored.
        assert completions.get(task_id) == [
            (int(result["attempt"]), result["agent"], result["nonce"])
        ], (task_id, completions.get(task_id), time.monotonic() - started)
    assert set(completions) == set(task_ids)


# Attacker pass: a flood ------------------------------------------------------------------------

FLOOD = 200
"""Concurrent CreateTask calls of one client: twice its burst, more than the queue holds."""
RATE_LIMITED = "rate limit"
QUEUE_FULL = "the most the queue holds"


async def test_a_client_flooding_create_task_is_refused_and_the_mesh_answers_others(
    restart_mesh: RestartMesh,
) -> None:
    tasks = restart_mesh.tasks
    settings = restart_mesh.settings
    flooder = await signed_in(settings, await new_account(settings, "user"))
    bystander = await signed_in(settings, await new_account(settings, "user"))
    # Queued for good (nobody runs the type): the queue's content does not change by itself.
    theirs = await tasks.CreateTask(
        pb.CreateTaskRequest(type="chaos.nobody"), metadata=bearer(bystander), timeout=TIMEOUT
    )

    async def create() -> tuple[grpc.StatusCode, str]:
        try:
            reply = await tasks.CreateTask(
                pb.CreateTaskRequest(type="chaos.nobody"), metadata=bearer(flooder), timeout=60
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, reply.task.task_id

    async def meanwhile() -> list[float]:
        """How long each of the bystander's reads takes while the flood goes on."""
        took = []
        for _ in range(10):
            began = time.monotonic()
            await tasks.GetTask(
                pb.GetTaskRequest(task_id=theirs.task.task_id),
                metadata=bearer(bystander),
                timeout=TIMEOUT,
            )
            await tasks.ListTasks(
                pb.ListTasksRequest(), metadata=bearer(bystander), timeout=TIMEOUT
            )
            took.append(time.monotonic() - began)
        return took

    began = time.monotonic()
    flood, reads = await asyncio.gather(
        asyncio.gather(*(create() for _ in range(FLOOD))), meanwhile()
    )
    # The flooder's bucket: its burst, and what refilled while the flood lasted.
    allowance = USER_BURST + int(USER_RATE * (time.monotonic() - began)) + 1

    accepted = [detail for code, detail in flood if code is grpc.StatusCode.OK]
    refused = [(code, detail) for code, detail in flood if code is not grpc.StatusCode.OK]
    try:
        assert {code for code, _ in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}, refused[:5]
        # Its allowance, then the per-user limit; within the allowance, the queue bound (the
        # bystander's task takes one place).
        assert len(accepted) <= QUEUE_BOUND - 1
        queue_full = sum(QUEUE_FULL in detail for _, detail in refused)
        rate_limited = sum(RATE_LIMITED in detail for _, detail in refused)
        assert queue_full > 0, refused[:5]
        assert len(accepted) + queue_full <= allowance
        assert rate_limited >= FLOOD - allowance
        assert len(accepted) + queue_full + rate_limited == FLOOD
        # Everyone else is answered all along (within seconds on a loaded machine).
        assert max(reads) < 10.0, reads
        # The queue bound is the mesh's: a full queue refuses everyone, until tasks finish.
        error = await failure(
            tasks.CreateTask(pb.CreateTaskRequest(type="chaos.record"), metadata=bearer(bystander))
        )
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert QUEUE_FULL in (error.details() or "")
    finally:
        # Cancelling is not limited: the flood's tasks go, and the queue has room again.
        for task_id, owner in [(t, flooder) for t in accepted] + [(theirs.task.task_id, bystander)]:
            await tasks.CancelTask(
                pb.CancelTaskRequest(task_id=task_id), metadata=bearer(owner), timeout=TIMEOUT
            )
    again = await tasks.CreateTask(
        pb.CreateTaskRequest(type="chaos.record"), metadata=bearer(bystander), timeout=TIMEOUT
    )
    assert again.task.state in {pb.TASK_STATE_PENDING, pb.TASK_STATE_QUEUED}


# Attacker pass: a compromised agent floods reports ---------------------------------------------

REPORT_FLOOD = 1500
"""Reports about an attempt nobody holds: more than the report consumer keeps unacknowledged."""


async def test_an_agent_flooding_reports_about_unassigned_attempts_stalls_nobody(
    restart_mesh: RestartMesh,
) -> None:
    tasks = restart_mesh.tasks
    user = await signed_in(restart_mesh.settings, await new_account(restart_mesh.settings, "user"))
    # Queued for good (nobody offers the type): its attempt is given to no agent.
    bait = await tasks.CreateTask(
        pb.CreateTaskRequest(type="chaos.nobody"), metadata=bearer(user), timeout=TIMEOUT
    )
    task_id = bait.task.task_id

    # The chaos agent's principal, compromised: a report about an attempt not assigned yet
    # waits (the coordinator's `assigned` may be on its way), so each would be redelivered for
    # a minute and more, holding a slot of the consumer meanwhile.
    async with connected(restart_mesh.settings, NAME) as compromised:
        report = dispatch_pb2.TaskReport(
            task_id=task_id, attempt=1, agent_id=agent_id("1"), started=dispatch_pb2.TaskStarted()
        ).SerializeToString()
        for _ in range(REPORT_FLOOD):
            await compromised.client.publish(f"sutazai.reports.agent.{agent_id('1')}", report)
        await compromised.settle()
        assert compromised.errors == []

    # Everyone else's reports still go through: a task runs and its success is recorded.
    started = time.monotonic()
    honest = await tasks.CreateTask(
        pb.CreateTaskRequest(type="chaos.record"), metadata=bearer(user), timeout=TIMEOUT
    )

    async def succeeded() -> bool:
        reply = await tasks.GetTask(
            pb.GetTaskRequest(task_id=honest.task.task_id), metadata=bearer(user), timeout=TIMEOUT
        )
        return bool(reply.task.state == pb.TASK_STATE_SUCCEEDED)

    await wait_for(succeeded, timeout=60, interval=0.5, message="the honest task recorded")
    took = time.monotonic() - started
    still = await tasks.GetTask(
        pb.GetTaskRequest(task_id=task_id), metadata=bearer(user), timeout=TIMEOUT
    )
    assert (still.task.state, still.task.agent_id) == (pb.TASK_STATE_QUEUED, ""), still.task
    await tasks.CancelTask(pb.CancelTaskRequest(task_id=task_id), metadata=bearer(user))
    assert took < 60
