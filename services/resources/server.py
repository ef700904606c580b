"""Wiring of the resource service: PostgreSQL, the host probe, NATS responder, guard, host."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from sutazai.resources.v1 import resource_service_pb2, resource_service_pb2_grpc
from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import open_guard
from sutazai.runtime.server import (
    ServiceHost,
    Servicer,
    join_registry,
    serve_until_stopped,
)
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.services.resources.arbiter import Arbiter
from sutazai.services.resources.handlers import ResourceHandlers
from sutazai.services.resources.host import HostProbe
from sutazai.services.resources.metrics import ResourceMetrics
from sutazai.services.resources.responder import Responder
from sutazai.services.resources.store import SCHEMA, open_pool, open_store

log = structlog.get_logger(__name__)

SERVICE_NAME: Final = "resources"
"""The table of ``deploy/mesh.toml``, registry key prefix and principal of this service."""
GRPC_SERVICE: Final[str] = resource_service_pb2.DESCRIPTOR.services_by_name[
    "ResourceService"
].full_name
POOL_SIZE = 10


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one instance until SIGTERM/SIGINT or cancellation."""
    await serve_until_stopped(build, mesh, service)


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Create the instance's connections (closed by ``stack``) and its unstarted host."""
    nc, registry = await join_registry(mesh, SERVICE_NAME, stack)
    pool = await open_pool(mesh.postgres_dsn, SCHEMA, max_size=POOL_SIZE)
    stack.push_async_callback(pool.close)
    redis_client = aioredis.Redis.from_url(
        mesh.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
    )
    stack.push_async_callback(redis_client.aclose)
    audit = AuditLog(pool)
    guard = open_guard(mesh, [GRPC_SERVICE], redis=redis_client, audit=audit, js=nc.jetstream())
    settings = mesh.resources
    metrics_registry = CollectorRegistry()
    metrics = ResourceMetrics(metrics_registry)
    probe = HostProbe(
        disk_path=mesh.state_dir,
        network_mbps=settings.network_mbps,
        gpu_devices=settings.gpu_devices,
    )
    store = await open_store(pool, SCHEMA)
    arbiter = Arbiter(store, probe.capacity, lambda: probe.usage, settings, metrics, audit)
    responder = Responder(nc, arbiter, metrics, settings.responder_concurrency)

    async def sample() -> None:
        arbiter.observe(probe.sample())

    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        servicers=[
            Servicer(
                name=GRPC_SERVICE,
                implementation=ResourceHandlers(arbiter),
                add_to_server=resource_service_pb2_grpc.add_ResourceServiceServicer_to_server,
            )
        ],
        registry=registry,
        guard=guard,
        background=[
            responder.run,
            every(settings.sample_interval_seconds, sample, "resources.sample_failed"),
            every(settings.sweep_interval_seconds, arbiter.sweep, "resources.sweep_failed"),
        ],
        on_drain=[responder.stop_taking],
        metrics_registry=metrics_registry,
    )


def every(
    seconds: float, job: Callable[[], Awaitable[None]], failure: str
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background loop running ``job`` every ``seconds``; a failure is logged, not fatal.

    PostgreSQL being away for a while must not end the instance: the next round tries again.
    """

    async def loop() -> None:
        while True:
            try:
                await job()
            except Exception:
                log.exception(failure)
            await asyncio.sleep(seconds)

    return loop
