"""Wiring of the auth service: connections, migrations, guard, handlers, host."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import asyncpg
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from sutazai.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import Guard, open_guard
from sutazai.runtime.key_watch import KeyFileWatch
from sutazai.runtime.postgres import open_pool
from sutazai.runtime.revocations import Revocations
from sutazai.runtime.server import (
    ServiceHost,
    Servicer,
    join_registry,
    serve_until_stopped,
)
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.runtime.tokens import TokenIssuer
from sutazai.services.auth.accounts import Accounts
from sutazai.services.auth.audit_feed import AuditFeed
from sutazai.services.auth.audit_watch import AuditWatch
from sutazai.services.auth.handlers import AuthHandlers
from sutazai.services.auth.passwords import Passwords
from sutazai.services.auth.sessions import Sessions
from sutazai.services.auth.store import open_store
from sutazai.services.auth.throttle import SignInThrottle
from sutazai.services.auth.trail import Trail

SERVICE_NAME: Final = "auth"
"""The table of ``deploy/mesh.toml``, registry key prefix and principal of this service."""
GRPC_SERVICE: Final[str] = auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
POOL_SIZE = 10
Job = Callable[[], Coroutine[object, object, None]]


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one instance until SIGTERM/SIGINT or cancellation."""
    await serve_until_stopped(build, mesh, service)


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Create the instance's connections (closed by ``stack``) and its unstarted host."""
    nc, registry = await join_registry(mesh, SERVICE_NAME, stack)
    pool = await open_pool(mesh.postgres_dsn, min_size=1, max_size=POOL_SIZE)
    stack.push_async_callback(pool.close)
    redis_client = aioredis.Redis.from_url(
        mesh.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
    )
    stack.push_async_callback(redis_client.aclose)
    opened = await open_service(mesh, pool, redis_client, nc.jetstream())
    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        servicers=[opened.servicer],
        registry=registry,
        guard=opened.guard,
        background=opened.background,
        on_drain=opened.on_drain,
    )


@dataclass(frozen=True, slots=True)
class OpenedService:
    """The auth service ready to be hosted: what :class:`ServiceHost` takes from it."""

    servicer: Servicer
    guard: Guard
    background: list[Job]
    """Jobs for the life of the host (the audit feed's listening connection)."""
    on_drain: list[Callable[[], None]]
    """Called when the host drains (the audit watches end, so clients reconnect elsewhere)."""


async def open_service(
    mesh: MeshSettings, pool: asyncpg.Pool, redis_client: aioredis.Redis, js: JetStreamContext
) -> OpenedService:
    """The service, its guard, its background jobs and drain hooks, every migration applied.

    Raises:
        ConfigurationError: the private signing-key ring or the public keys are missing or
            unreadable.

    """
    audit = AuditLog(pool)
    guard = open_guard(mesh, [GRPC_SERVICE], redis=redis_client, audit=audit, js=js)
    store = await open_store(pool)
    passwords = Passwords()
    trail = Trail(audit)
    # Connected lazily, by the feed's job, as the service's own role.
    feed = AuditFeed(lambda: asyncpg.connect(mesh.postgres_dsn))
    throttle = SignInThrottle(redis_client, mesh.auth)
    signing_keys = KeyFileWatch.key_ring(mesh.keys_file)
    signing_keys.load()  # fail at start-up, not at the first login, when the ring is unreadable
    sessions = Sessions(
        store=store,
        passwords=passwords,
        issuer=TokenIssuer(
            signing_keys,
            issuer=mesh.auth.issuer,
            ttl=timedelta(seconds=mesh.auth.access_ttl_seconds),
        ),
        revocations=guard.revocations,
        throttle=throttle,
        trail=trail,
        access_ttl=timedelta(seconds=mesh.auth.access_ttl_seconds),
        refresh_ttl=timedelta(seconds=mesh.auth.refresh_ttl_seconds),
    )
    accounts = Accounts(
        store=store,
        passwords=passwords,
        trail=trail,
        revocations=guard.revocations,
        throttle=throttle,
    )
    servicer = Servicer(
        name=GRPC_SERVICE,
        implementation=AuthHandlers(accounts, sessions, throttle, trail, AuditWatch(audit, feed)),
        add_to_server=auth_service_pb2_grpc.add_AuthServiceServicer_to_server,
    )
    return OpenedService(servicer, guard, background=[feed.run], on_drain=[feed.close])


async def open_accounts(
    mesh: MeshSettings, pool: asyncpg.Pool, redis_client: aioredis.Redis, revocations: Revocations
) -> Accounts:
    """Account administration without a server (the CLI), with every migration applied.

    ``revocations`` must be attached to the bucket for the calls that revoke; Redis is only
    used by the calls that unlock (the client connects on first use).
    """
    trail = Trail(AuditLog(pool))
    store = await open_store(pool)
    return Accounts(
        store=store,
        passwords=Passwords(),
        trail=trail,
        revocations=revocations,
        throttle=SignInThrottle(redis_client, mesh.auth),
    )
