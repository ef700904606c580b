"""The auth service hosted in-process on real PostgreSQL, Redis and NATS, behind a real guard."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from sutazai.auth.v1 import auth_service_pb2_grpc as pb_grpc
from sutazai.runtime.key_files import ensure_key_ring
from sutazai.runtime.keys import KeyRing
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.revocations import Revocations
from sutazai.runtime.server import ServiceHost
from sutazai.runtime.settings import AuthSettings, MeshSettings, ServiceSettings
from sutazai.services.auth.accounts import Accounts
from sutazai.services.auth.server import SERVICE_NAME, open_accounts, open_service
from tests.auth.helpers import Caller


@pytest.fixture(scope="session")
def key_ring(mesh_settings: MeshSettings) -> KeyRing:
    """The session's signing keys (the supervisor makes them at start-up; tests may be first)."""
    return ensure_key_ring(mesh_settings.keys_file, mesh_settings.jwks_file)


@pytest.fixture(scope="session")
def auth_settings(mesh_settings: MeshSettings) -> MeshSettings:
    """The session mesh's settings as the auth service's principal (its role, its Redis user)."""
    return mesh_settings.as_principal("auth")


@pytest.fixture(scope="session")
async def pool(auth_settings: MeshSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(auth_settings.postgres_dsn, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis_client(auth_settings: MeshSettings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(auth_settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def auth_nats(mesh_settings: MeshSettings) -> AsyncIterator[NatsClient]:
    """A NATS connection as the ``auth`` principal (the one that may write revocations)."""
    client = await connect_nats(mesh_settings.as_principal(SERVICE_NAME), name="tests-auth")
    yield client
    await client.close()


@pytest.fixture(scope="session")
def auth_js(auth_nats: NatsClient) -> JetStreamContext:
    return auth_nats.jetstream()


@contextlib.asynccontextmanager
async def hosted(
    settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    js: JetStreamContext,
    *,
    host: str | None = None,
    grace_seconds: float = 1.0,
) -> AsyncIterator[Caller]:
    """An auth service on a free port with ``settings``, and a client calling it directly.

    ``host`` binds another loopback address (the client's address is then that of the
    socket it connects from; see :func:`tests.auth.helpers.from_address`).
    """
    if host is not None:
        settings = settings.model_copy(update={"host": host})
    # As the service runs: its own principal (the audit feed connects to PostgreSQL as it).
    settings = settings.as_principal(SERVICE_NAME)
    opened = await open_service(settings, pool, redis_client, js)
    host = ServiceHost(
        name=SERVICE_NAME,
        mesh=settings,
        settings=ServiceSettings(port=0, metrics_port=-1, grace_seconds=grace_seconds),
        servicers=[opened.servicer],
        registry=None,
        guard=opened.guard,
        background=opened.background,
        on_drain=opened.on_drain,
    )
    await host.start()
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            yield Caller(pb_grpc.AuthServiceStub(channel), host.address)
    finally:
        await host.stop()


@pytest.fixture(scope="session")
async def auth(
    auth_settings: MeshSettings,
    key_ring: KeyRing,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
) -> AsyncIterator[Caller]:
    """The service with the test mesh's settings (5 failures lock a pair, no slow-down)."""
    async with hosted(auth_settings, pool, redis_client, auth_js) as caller:
        yield caller


STRICT = AuthSettings(
    lockout_threshold=5,
    lockout_seconds=3,
    failure_delay_seconds=0.0,
    sign_in_rate_burst=1000,
    sign_in_rate_per_second=1000,
    failure_audit_burst=1000,
    failure_audit_per_second=1000,
    user_rate_burst=2,
    user_rate_per_second=0.01,
)
"""Locks that end within a test, and a per-user bucket that empties after two calls."""


@pytest.fixture(scope="session")
async def strict(
    auth_settings: MeshSettings,
    key_ring: KeyRing,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
) -> AsyncIterator[Caller]:
    """A second instance on the same database with :data:`STRICT` auth settings."""
    settings = auth_settings.model_copy(update={"auth": STRICT})
    async with hosted(settings, pool, redis_client, auth_js) as caller:
        yield caller


@pytest.fixture(scope="session")
async def accounts(
    mesh_settings: MeshSettings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    auth_js: JetStreamContext,
) -> Accounts:
    """Account administration as the CLI does it (to create admins)."""
    revocations = Revocations(mesh_settings.auth)
    revocations.attach(await auth_js.key_value(mesh_settings.auth.revocations_bucket))
    return await open_accounts(mesh_settings, pool, redis_client, revocations)
