"""Fixtures of the task service's tests: the streams, the service through Envoy, NATS as admin."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import httpx
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from sutazai.ops.supervisor.components.postgres import maintenance_dsn
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.settings import MeshSettings
from sutazai.services.tasks.store import TaskStore, open_store, session_settings
from sutazai.tasks.v1.task_service_pb2_grpc import TaskServiceStub
from tests.harness.fixtures import Account, new_account, signed_in
from tests.harness.waiting import wait_for

CALL_TIMEOUT = 10.0


@pytest.fixture(scope="session")
async def admin_nats(mesh_settings: MeshSettings) -> AsyncIterator[Client]:
    """A NATS connection as ``admin`` (plays the coordinator and the agents)."""
    nc = await connect_nats(mesh_settings, name="tests-tasks-admin")
    try:
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
async def other_user_account(mesh_services: MeshSettings) -> Account:
    """A second plain user's account."""
    return await new_account(mesh_services, "user")


@pytest.fixture(scope="module")
async def other_user_token(mesh_services: MeshSettings, other_user_account: Account) -> str:
    """An access token of a second plain user."""
    return await signed_in(mesh_services, other_user_account)


@pytest.fixture
async def schema(mesh_settings: MeshSettings) -> AsyncIterator[str]:
    """A fresh schema owned by the task service's role (the mesh's task service never sees it)."""
    name = f"tasks_test_{uuid.uuid4().hex[:8]}"
    role = mesh_settings.postgres.service_role("tasks")
    admin = await asyncpg.connect(maintenance_dsn(mesh_settings, mesh_settings.postgres.database))
    try:
        await admin.execute(f'CREATE SCHEMA {name} AUTHORIZATION "{role}"')
        yield name
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
    finally:
        await admin.close()


@pytest.fixture
async def store(mesh_settings: MeshSettings, schema: str) -> AsyncIterator[TaskStore]:
    """A task store on :func:`schema`, as the task service's role."""
    pool = await asyncpg.create_pool(
        mesh_settings.as_principal("tasks").postgres_dsn,
        min_size=1,
        max_size=4,
        server_settings=session_settings(schema),
    )
    try:
        yield await open_store(pool, schema)
    finally:
        await pool.close()
