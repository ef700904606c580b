"""Wiring of the hardware service: the toolbox, NATS (advice, reclamation), guard, host."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Final

import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from sutazai.hardware.v1 import hardware_service_pb2, hardware_service_pb2_grpc
from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import open_guard
from sutazai.runtime.postgres import open_pool
from sutazai.runtime.reclaim import ReclaimResult, ask_reclaim
from sutazai.runtime.registry import Registry
from sutazai.runtime.server import (
    ServiceHost,
    Servicer,
    join_registry,
    serve_until_stopped,
)
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.runtime.stream_slots import StreamSlots
from sutazai.services.hardware.handlers import HardwareHandlers
from sutazai.services.hardware.metrics import HardwareMetrics
from sutazai.services.hardware.operations import Toolbox
from sutazai.services.hardware.upstream import InferenceAsker

log = structlog.get_logger(__name__)

SERVICE_NAME: Final = "hardware"
"""The table of ``deploy/mesh.toml``, registry key prefix and principal of this service."""
GRPC_SERVICE: Final[str] = hardware_service_pb2.DESCRIPTOR.services_by_name[
    "HardwareService"
].full_name
REGISTRY_PIDS_SECONDS = 5.0
"""How often the pids the registry advertises (the mesh's instances) are read again."""


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one instance until SIGTERM/SIGINT or cancellation."""
    await serve_until_stopped(build, mesh, service)


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Create the instance's connections (closed by ``stack``) and its unstarted host."""
    nc, registry = await join_registry(mesh, SERVICE_NAME, stack)
    # The audit log of every change (the guard writes it); min_size=0 so the service starts
    # while PostgreSQL is away (a change is then refused: it cannot be audited).
    pool = await open_pool(mesh.postgres_dsn, min_size=0, max_size=2)
    stack.push_async_callback(pool.close)
    guard_redis = aioredis.Redis.from_url(mesh.redis_url, health_check_interval=10)
    stack.push_async_callback(guard_redis.aclose)
    guard = open_guard(
        mesh, [GRPC_SERVICE], redis=guard_redis, audit=AuditLog(pool), js=nc.jetstream()
    )
    toolbox = await asyncio.to_thread(Toolbox.open, mesh)
    for refused in toolbox.policy.refused_roots:
        log.warning("hardware.root_refused", root=str(refused.root), reason=refused.reason)
    log.info("hardware.roots", roots=[str(root) for root in toolbox.policy.roots])
    # Replaced whole (never mutated), so the sampler's threads read it without a lock.
    registry_pids: list[frozenset[int]] = [frozenset()]
    toolbox.mesh.set_extra(lambda: registry_pids[0])

    async def reclaim(dry_run: bool, wait_seconds: float) -> list[ReclaimResult]:
        # Every instance in the registry answers (the hardware service too): stop waiting
        # once each has.
        expected = len({i.pid for i in await registry.list() if i.pid > 0}) or None
        return await ask_reclaim(nc, dry_run=dry_run, wait_seconds=wait_seconds, expected=expected)

    metrics_registry = CollectorRegistry()
    metrics = HardwareMetrics(metrics_registry)
    handlers = HardwareHandlers(
        toolbox,
        metrics=metrics,
        inference=InferenceAsker(nc),
        reclaim=reclaim,
        slots=StreamSlots(service.max_watch_streams, service.max_watch_streams_per_caller),
        default_interval_seconds=mesh.hardware.sample_interval_seconds,
    )
    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        servicers=[
            Servicer(
                name=GRPC_SERVICE,
                implementation=handlers,
                add_to_server=hardware_service_pb2_grpc.add_HardwareServiceServicer_to_server,
            )
        ],
        registry=registry,
        guard=guard,
        background=[_registry_pids(registry, registry_pids)],
        on_drain=[handlers.close],
        metrics_registry=metrics_registry,
    )


def _registry_pids(
    registry: Registry, pids: list[frozenset[int]]
) -> Callable[[], Coroutine[Any, Any, None]]:
    """Keep ``pids[0]`` the pids the registry advertises (the mesh's own instances)."""

    async def loop() -> None:
        while True:
            try:
                pids[0] = frozenset(i.pid for i in await registry.list() if i.pid > 0)
            except Exception:
                log.warning("hardware.registry_unreadable", exc_info=True)
            await asyncio.sleep(REGISTRY_PIDS_SECONDS)

    return loop
