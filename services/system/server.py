"""Wiring of the system service: connections, probes, prober, handlers, host."""

from __future__ import annotations

import contextlib
import uuid

import asyncpg
import httpx
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sutazai.services.runtime.messaging import connect_nats
from sutazai.services.runtime.registry import Registry
from sutazai.services.runtime.server import ServiceHost, Servicer
from sutazai.services.runtime.settings import MeshSettings, ServiceSettings
from sutazai.services.system.domain import StatusBoard
from sutazai.services.system.handlers import SystemHandlers
from sutazai.services.system.prober import Prober
from sutazai.services.system.probes import (
    EnvoyProbe,
    InstancesProbe,
    NatsProbe,
    PostgresProbe,
    RedisProbe,
    public_address,
)
from sutazai.system.v1 import system_service_pb2_grpc

SERVICE_NAME = "system"


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one system-service instance until SIGTERM/SIGINT or cancellation."""
    async with contextlib.AsyncExitStack() as stack:
        host = await build(mesh, service, stack)
        await host.run()


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Create the instance's connections (closed by ``stack``) and its unstarted host."""
    nc = await connect_nats(mesh, name=f"sutazai-{SERVICE_NAME}")
    stack.push_async_callback(nc.close)
    registry = await Registry.open(nc.jetstream(), mesh.registry)
    # min_size=0: the pool must not need PostgreSQL up to start; it reconnects after restarts.
    pool = await asyncpg.create_pool(mesh.postgres_dsn, min_size=0, max_size=2)
    stack.push_async_callback(pool.close)
    redis_client = aioredis.Redis.from_url(
        mesh.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    stack.push_async_callback(redis_client.aclose)
    http = httpx.AsyncClient(timeout=1.0)
    stack.push_async_callback(http.aclose)
    instances = InstancesProbe(registry)
    stack.push_async_callback(instances.close)

    board = StatusBoard()
    prober = Prober(
        [
            PostgresProbe(pool, public_address(mesh.postgres_dsn)),
            RedisProbe(redis_client, public_address(mesh.redis_url)),
            NatsProbe(nc),
            EnvoyProbe(http, mesh.envoy_admin_url),
            instances,
        ],
        board,
        interval=service.probe_interval_seconds,
    )
    await prober.probe_once()
    instance_id = uuid.uuid4().hex[:12]
    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        servicers=[
            Servicer(
                name="sutazai.system.v1.SystemService",
                implementation=SystemHandlers(
                    board, prober, reporter=f"{SERVICE_NAME}/{instance_id}"
                ),
                add_to_server=system_service_pb2_grpc.add_SystemServiceServicer_to_server,
            )
        ],
        registry=registry,
        background=[prober.run],
        instance_id=instance_id,
    )
