"""AgentService and CoordinatorService through Envoy, on the session mesh (every service).

The test plays the agent ``fake`` (tests/harness/mesh.toml): it writes heartbeats to the
agent registry as admin, and the coordinator service's watch turns them into agents.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from nats.aio.client import Client as NatsClient

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.agents.v1.agent_service_pb2_grpc import AgentServiceStub
from sutazai.coordinator.v1 import coordinator_service_pb2 as pb
from sutazai.coordinator.v1.coordinator_service_pb2_grpc import CoordinatorServiceStub
from sutazai.runtime.jetstream import AGENTS_BUCKET
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import MeshSettings
from sutazai.tasks.v1 import task_service_pb2 as tasks_pb
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.auth.helpers import bearer, failure, field_violations
from tests.harness.waiting import wait_for
from tests.tasks.helpers import create, get

pytestmark = pytest.mark.integration


@pytest.fixture
async def channel(mesh_services: MeshSettings) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        yield channel


@pytest.fixture
async def admin_nats(mesh_services: MeshSettings) -> AsyncIterator[NatsClient]:
    client = await connect_nats(mesh_services, name="test-agents-e2e")
    yield client
    await client.close()


async def beat(
    nats_client: NatsClient, agent_id: str, running: int = 0, capabilities: tuple[str, ...] = ()
) -> None:
    kv = await nats_client.jetstream().key_value(AGENTS_BUCKET)
    heartbeat = agents_pb.AgentHeartbeat(
        agent_id=agent_id,
        capabilities=capabilities or ["test.noop"],
        max_concurrency=4,
        running=running,
        state=agents_pb.AGENT_STATE_ONLINE,
        runtime="python/test",
    )
    await kv.put(agent_id, heartbeat.SerializeToString())


async def test_agents_are_listed_watched_and_go_offline(
    channel: grpc.aio.Channel, admin_nats: NatsClient, user_token: str
) -> None:
    agents = AgentServiceStub(channel)
    watch = agents.WatchAgents(agents_pb.WatchAgentsRequest(), metadata=bearer(user_token))
    seen: list[agents_pb.WatchAgentsResponse] = []

    async def until(predicate: object) -> agents_pb.WatchAgentsResponse:
        async with asyncio.timeout(20):
            async for message in watch:
                seen.append(message)
                if predicate(message):  # type: ignore[operator]
                    return message
        raise AssertionError("the watch ended")

    await until(lambda m: m.snapshot)
    await beat(admin_nats, "fake.1", running=1)
    online = await until(lambda m: m.agent.heartbeat.agent_id == "fake.1")
    assert online.agent.state == agents_pb.AGENT_STATE_ONLINE
    assert online.agent.load == pytest.approx(0.25)
    assert not online.snapshot

    listed = await agents.ListAgents(agents_pb.ListAgentsRequest(), metadata=bearer(user_token))
    assert "fake.1" in {a.heartbeat.agent_id for a in listed.agents}
    got = await agents.GetAgent(
        agents_pb.GetAgentRequest(agent_id="fake.1"), metadata=bearer(user_token)
    )
    assert list(got.agent.heartbeat.capabilities) == ["test.noop"]

    # The instance stops: its key is deleted, it is OFFLINE with its last heartbeat.
    kv = await admin_nats.jetstream().key_value(AGENTS_BUCKET)
    await kv.delete("fake.1")
    offline = await until(
        lambda m: (
            m.agent.heartbeat.agent_id == "fake.1"
            and m.agent.state == agents_pb.AGENT_STATE_OFFLINE
        )
    )
    assert offline.agent.heartbeat.runtime == "python/test"
    watch.cancel()


async def test_an_agent_is_given_only_the_task_types_its_deployment_names(
    channel: grpc.aio.Channel, admin_nats: NatsClient, user_token: str
) -> None:
    """A compromised agent claims a type that is not its own: the task waits for another."""
    kind = f"tests.stolen-{uuid.uuid4().hex[:8]}"
    agents = AgentServiceStub(channel)
    tasks = TaskServiceStub(channel)
    kv = await admin_nats.jetstream().key_value(AGENTS_BUCKET)
    task_id = ""
    try:
        # chaos may run only chaos.* (tests/harness/mesh.toml); its heartbeat claims kind.
        await beat(admin_nats, "chaos.2", capabilities=(kind,))

        async def known() -> bool:
            got = await agents.GetAgent(
                agents_pb.GetAgentRequest(agent_id="chaos.2"), metadata=bearer(user_token)
            )
            return kind in got.agent.heartbeat.capabilities

        await wait_for(known, timeout=20, interval=0.05, message="chaos.2 claiming the type")
        task_id = (await create(tasks, user_token, type=kind)).task.task_id

        async def explained() -> bool:
            return bool((await get(tasks, user_token, task_id)).waiting_reason)

        await wait_for(explained, timeout=30, interval=0.05, message="a waiting reason")
        waiting = await get(tasks, user_token, task_id)
        assert waiting.state == tasks_pb.TASK_STATE_QUEUED
        assert waiting.waiting_reason == f"no online agent offers {kind}"
        assert waiting.agent_id == ""

        # fake may run any type: the same claim gets it the task.
        await beat(admin_nats, "fake.2", capabilities=(kind,))

        async def assigned() -> bool:
            return (await get(tasks, user_token, task_id)).agent_id != ""

        await wait_for(assigned, timeout=30, interval=0.05, message="an agent for the task")
        assert (await get(tasks, user_token, task_id)).agent_id == "fake.2"
    finally:
        if task_id:
            await tasks.CancelTask(
                tasks_pb.CancelTaskRequest(task_id=task_id), metadata=bearer(user_token)
            )
        for agent_id in ("chaos.2", "fake.2"):
            await kv.delete(agent_id)


async def test_agent_errors(channel: grpc.aio.Channel, user_token: str) -> None:
    agents = AgentServiceStub(channel)
    for malformed in ("fake", "fake.x", "Fake.1", "fake.1.2", "x" * 200):
        error = await failure(
            agents.GetAgent(
                agents_pb.GetAgentRequest(agent_id=malformed), metadata=bearer(user_token)
            )
        )
        assert "agent_id" in field_violations(error), malformed
    error = await failure(
        agents.GetAgent(agents_pb.GetAgentRequest(agent_id="nobody.9"), metadata=bearer(user_token))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await failure(agents.ListAgents(agents_pb.ListAgentsRequest()))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_operators_set_the_strategy_and_read_stats_and_streams(
    channel: grpc.aio.Channel,
    mesh_services: MeshSettings,
    operator_token: str,
    user_token: str,
) -> None:
    coordinator = CoordinatorServiceStub(channel)
    operator = bearer(operator_token)
    error = await failure(
        coordinator.SetStrategy(
            pb.SetStrategyRequest(strategy=pb.STRATEGY_LEAST_LOADED), metadata=bearer(user_token)
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    error = await failure(coordinator.SetStrategy(pb.SetStrategyRequest(), metadata=operator))
    assert "strategy" in field_violations(error)
    try:
        changed = await coordinator.SetStrategy(
            pb.SetStrategyRequest(strategy=pb.STRATEGY_WEIGHTED_SCORE), metadata=operator
        )
        assert changed.strategy == pb.STRATEGY_WEIGHTED_SCORE
        current = await coordinator.GetStrategy(pb.GetStrategyRequest(), metadata=operator)
        assert current.strategy == pb.STRATEGY_WEIGHTED_SCORE
        assert current.changed_by
        stats = await coordinator.GetStats(pb.GetStatsRequest(), metadata=operator)
        assert stats.strategy == pb.STRATEGY_WEIGHTED_SCORE
        assert len(stats.queued_by_priority) == 4
    finally:
        await coordinator.SetStrategy(
            pb.SetStrategyRequest(strategy=pb.STRATEGY_ROUND_ROBIN), metadata=operator
        )
    streams = await coordinator.ListStreams(pb.ListStreamsRequest(), metadata=operator)
    names = {s.name: s for s in streams.streams}
    assert set(names) == {"SUTAZAI_TASKS", "SUTAZAI_WORK", "SUTAZAI_REPORTS", "SUTAZAI_DEAD"}
    assert "coordinator" in {c.name for c in names["SUTAZAI_TASKS"].consumers}
    assert "agent-fake-1" in {c.name for c in names["SUTAZAI_WORK"].consumers}

    # REST through the transcoder.
    base = f"http://127.0.0.1:{mesh_services.envoy.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        reply = await client.get(
            "/v1/coordinator/strategy", headers={"authorization": f"Bearer {operator_token}"}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["strategy"] == "STRATEGY_ROUND_ROBIN"
        reply = await client.get(
            "/v1/agents/nobody.9", headers={"authorization": f"Bearer {user_token}"}
        )
        assert reply.status_code == 404, reply.text
