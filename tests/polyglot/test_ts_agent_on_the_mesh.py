"""The TypeScript agent on the session mesh, beside the Python text agent: nobody is played.

It runs as instance ``1`` of the harness's external agent ``polyglot`` (tests/harness/mesh.toml),
with the credentials file the supervisor wrote for it; a ``text.reverse`` task created through
Envoy's TaskService is assigned to it by the real coordinator, and its reports reach the task
service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from sutazai.agents.v1 import agent_service_pb2 as agents_pb
from sutazai.agents.v1.agent_service_pb2_grpc import AgentServiceStub
from sutazai.runtime.credentials import credentials_path
from sutazai.runtime.settings import MeshSettings
from sutazai.tasks.v1 import task_service_pb2 as pb
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.auth.helpers import bearer
from tests.harness.waiting import wait_for
from tests.polyglot.agent import RUNTIME, running_agent

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
TEXT = "Grüße, agent 🙂"


@pytest.fixture
async def channel(mesh_services: MeshSettings) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        yield channel


async def test_a_reverse_task_from_envoy_runs_on_the_typescript_agent(
    mesh_services: MeshSettings,
    channel: grpc.aio.Channel,
    node_workdir: Path,
    node_modules: Path,
    user_token: str,
    tmp_path: Path,
) -> None:
    tasks = TaskServiceStub(channel)
    agents = AgentServiceStub(channel)
    async with running_agent(
        node_workdir,
        node_modules,
        servers=mesh_services.nats_servers,
        credentials_file=credentials_path(mesh_services.state_dir, "polyglot"),
        instance="1",
        log=tmp_path / "agent.log",
    ) as agent:
        assert agent.agent_id == "polyglot.1"

        async def registered() -> bool:
            listed = await agents.ListAgents(
                agents_pb.ListAgentsRequest(), metadata=bearer(user_token), timeout=TIMEOUT
            )
            states = {a.heartbeat.agent_id: a for a in listed.agents}
            return (
                "polyglot.1" in states
                and states["polyglot.1"].state == agents_pb.AGENT_STATE_ONLINE
                and "text.1" in states
            )

        await wait_for(registered, timeout=20, interval=0.2, message="both agents online")
        got = await agents.GetAgent(
            agents_pb.GetAgentRequest(agent_id="polyglot.1"),
            metadata=bearer(user_token),
            timeout=TIMEOUT,
        )
        assert got.agent.heartbeat.runtime == RUNTIME
        assert "text.reverse" in got.agent.heartbeat.capabilities

        payload = json_format.ParseDict({"text": TEXT}, pb.CreateTaskRequest().payload)
        created = await tasks.CreateTask(
            pb.CreateTaskRequest(type="text.reverse", payload=payload, timeout_seconds=60),
            metadata=bearer(user_token),
            timeout=TIMEOUT,
        )
        stream = tasks.WatchTask(
            pb.WatchTaskRequest(task_id=created.task.task_id),
            metadata=bearer(user_token),
            timeout=60,
        )
        last = created.task
        async for message in stream:
            last = message.task

        assert last.state == pb.TASK_STATE_SUCCEEDED, (last, agent.output())
        assert last.agent_id == "polyglot.1"
        assert last.attempt == 1
        assert json_format.MessageToDict(last.result) == {
            "text": TEXT[::-1],
            "length": float(len(TEXT)),
        }
