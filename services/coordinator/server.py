"""Wiring of the coordinator service: NATS (work, state, agents), the guard, handlers, host."""

from __future__ import annotations

import contextlib
from typing import Final

import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from sutazai.agents.v1 import agent_service_pb2, agent_service_pb2_grpc
from sutazai.coordinator.v1 import coordinator_service_pb2, coordinator_service_pb2_grpc
from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import open_guard
from sutazai.runtime.deployment import TaskTypes, load_agents
from sutazai.runtime.postgres import open_pool
from sutazai.runtime.server import (
    ServiceHost,
    Servicer,
    instance_id_of,
    join_registry,
    serve_until_stopped,
)
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.services.coordinator.agents import AgentDirectory
from sutazai.services.coordinator.engine import Coordinator
from sutazai.services.coordinator.handlers import AgentHandlers, CoordinatorHandlers
from sutazai.services.coordinator.metrics import CoordinatorMetrics

log = structlog.get_logger(__name__)

SERVICE_NAME: Final = "coordinator"
"""The table of ``deploy/mesh.toml``, registry key prefix and principal of this service."""
COORDINATOR_SERVICE: Final[str] = coordinator_service_pb2.DESCRIPTOR.services_by_name[
    "CoordinatorService"
].full_name
AGENT_SERVICE: Final[str] = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name


def agent_task_types(mesh: MeshSettings) -> dict[str, TaskTypes]:
    """What each agent may run: ``deploy/mesh.toml``'s ``task_types``, then the settings' own.

    Raises:
        ConfigurationError: the catalog is unreadable or malformed.

    """
    declared = {agent.name: agent.task_types for agent in load_agents()}
    for name, patterns in mesh.coordinator.agent_task_types.items():
        declared.setdefault(name, TaskTypes.parse(patterns))
    return declared


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one instance until SIGTERM/SIGINT or cancellation."""
    await serve_until_stopped(build, mesh, service)


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Create the instance's connections (closed by ``stack``) and its unstarted host."""
    nc, registry = await join_registry(mesh, SERVICE_NAME, stack)
    # min_size=0: the audit log's pool must not need PostgreSQL up to start.
    pool = await open_pool(mesh.postgres_dsn, min_size=0, max_size=2)
    stack.push_async_callback(pool.close)
    redis_client = aioredis.Redis.from_url(mesh.redis_url, health_check_interval=10)
    stack.push_async_callback(redis_client.aclose)
    guard = open_guard(
        mesh,
        [COORDINATOR_SERVICE, AGENT_SERVICE],
        redis=redis_client,
        audit=AuditLog(pool),
        js=nc.jetstream(),
    )
    metrics_registry = CollectorRegistry()
    directory = AgentDirectory(agent_task_types(mesh))
    instance_id = instance_id_of(service)
    coordinator = Coordinator(
        nc,
        mesh.coordinator,
        CoordinatorMetrics(metrics_registry),
        directory,
        instance_id=instance_id,
    )
    # Given up before NATS closes: a standby instance takes over at once.
    stack.push_async_callback(coordinator.release_lease)
    agent_handlers = AgentHandlers(directory)
    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        instance_id=instance_id,
        servicers=[
            Servicer(
                name=COORDINATOR_SERVICE,
                implementation=CoordinatorHandlers(coordinator),
                add_to_server=coordinator_service_pb2_grpc.add_CoordinatorServiceServicer_to_server,
            ),
            Servicer(
                name=AGENT_SERVICE,
                implementation=agent_handlers,
                add_to_server=agent_service_pb2_grpc.add_AgentServiceServicer_to_server,
            ),
        ],
        registry=registry,
        guard=guard,
        background=[coordinator.run],
        on_drain=[agent_handlers.drain],
        metrics_registry=metrics_registry,
    )
