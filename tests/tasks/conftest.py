"""Fixtures of the task service's tests: the streams, the service through Envoy, NATS as admin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import MeshSettings
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.harness.fixtures import _signed_in
from tests.harness.waiting import wait_for

CALL_TIMEOUT = 10.0


async def ensure_task_streams(js: JetStreamContext) -> None:
    """Create the task system's streams as admin, with nats/README.md's settings, if missing.

    Until the supervisor creates them (nats/jetstream.toml), the tests do; delete this then.
    """
    day = 24 * 3600.0
    streams = [
        StreamConfig(
            name="SUTAZAI_TASKS",
            subjects=["sutazai.tasks.queue.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=1,
            duplicate_window=120.0,
            max_msgs=10_000,
            discard=DiscardPolicy.NEW,
        ),
        StreamConfig(
            name="SUTAZAI_REPORTS",
            subjects=[
                "sutazai.reports.agent.*.*",
                "sutazai.reports.coordinator",
                "sutazai.reports.tasks",
            ],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=1,
            duplicate_window=120.0,
            max_age=7 * day,
        ),
        StreamConfig(
            name="SUTAZAI_DEAD",
            subjects=["sutazai.dead.tasks"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=1,
            max_age=30 * day,
        ),
    ]
    for config in streams:
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)


@pytest.fixture(scope="session")
async def admin_nats(mesh_settings: MeshSettings) -> AsyncIterator[Client]:
    """A NATS connection as ``admin`` (plays the coordinator and the agents)."""
    nc = await connect_nats(mesh_settings, name="tests-tasks-admin")
    try:
        await ensure_task_streams(nc.jetstream())
        yield nc
    finally:
        await nc.close()


@pytest.fixture(scope="session")
async def task_mesh(mesh_services: MeshSettings, admin_nats: Client) -> MeshSettings:
    """The mesh with the task streams, its task service consuming reports."""
    js = admin_nats.jetstream()

    async def consuming() -> bool:
        try:
            await js.consumer_info("SUTAZAI_REPORTS", "tasks")
        except NotFoundError:
            return False
        return True

    await wait_for(consuming, timeout=30, interval=0.1, message="the tasks report consumer")
    return mesh_services


@pytest.fixture
async def tasks(task_mesh: MeshSettings) -> AsyncIterator[TaskServiceStub]:
    """TaskService through Envoy (gRPC)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{task_mesh.envoy.port}") as channel:
        yield TaskServiceStub(channel)


@pytest.fixture
async def rest(task_mesh: MeshSettings, user_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """REST through Envoy as the plain user."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{task_mesh.envoy.port}",
        headers={"authorization": f"Bearer {user_token}"},
        timeout=CALL_TIMEOUT,
    ) as client:
        yield client


@pytest.fixture(scope="session")
async def other_user_token(mesh_services: MeshSettings) -> str:
    """An access token of a second plain user."""
    return await _signed_in(mesh_services, "user")
