"""Wiring of the task service: PostgreSQL, NATS, the guard, the outbox, reports, watches, host."""

from __future__ import annotations

import contextlib
from typing import Final

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import open_guard
from sutazai.runtime.deployment import task_roles
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.postgres import open_pool
from sutazai.runtime.server import (
    ServiceHost,
    Servicer,
    join_registry,
    serve_until_stopped,
)
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.runtime.stream_slots import StreamSlots
from sutazai.services.tasks.feed import TaskFeed
from sutazai.services.tasks.handlers import TaskHandlers
from sutazai.services.tasks.ledger import TaskLedger
from sutazai.services.tasks.metrics import TaskMetrics
from sutazai.services.tasks.outbox import Outbox
from sutazai.services.tasks.reports import ReportConsumer
from sutazai.services.tasks.store import SCHEMA, open_store, session_settings
from sutazai.services.tasks.watch import Watches
from sutazai.tasks.v1 import task_service_pb2, task_service_pb2_grpc

SERVICE_NAME: Final = "tasks"
"""The table of ``deploy/mesh.toml``, registry key prefix and principal of this service."""
GRPC_SERVICE: Final[str] = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name
POOL_SIZE = 10


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one instance until SIGTERM/SIGINT or cancellation."""
    await serve_until_stopped(build, mesh, service)


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Create the instance's connections (closed by ``stack``) and its unstarted host."""
    nc, registry = await join_registry(mesh, SERVICE_NAME, stack)
    server_settings = session_settings()
    pool = await open_pool(
        mesh.postgres_dsn, min_size=1, max_size=POOL_SIZE, server_settings=server_settings
    )
    stack.push_async_callback(pool.close)
    redis_client = aioredis.Redis.from_url(
        mesh.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
    )
    stack.push_async_callback(redis_client.aclose)
    settings = mesh.tasks
    metrics_registry = CollectorRegistry()
    metrics = TaskMetrics(metrics_registry)
    store = await open_store(pool)
    outboxes: list[Outbox] = []

    async def reconnected() -> None:
        for outbox in outboxes:
            outbox.wake()

    # Dispatch and reports on a connection of their own, whose reconnections wake the relay.
    work = await connect_nats(mesh, name=f"sutazai-{SERVICE_NAME}-work", reconnected_cb=reconnected)
    stack.push_async_callback(work.close)
    outbox = Outbox(store, work, settings, metrics)
    outboxes.append(outbox)
    outbox.wake()  # rows a previous run left behind go out at once
    consumer = ReportConsumer(store, work, settings, metrics)
    feed = TaskFeed(
        lambda: asyncpg.connect(mesh.postgres_dsn, server_settings=server_settings), SCHEMA
    )
    watches = Watches(
        store,
        feed,
        StreamSlots(service.max_watch_streams, service.max_watch_streams_per_caller),
        metrics,
    )
    audit = AuditLog(pool)
    guard = open_guard(mesh, [GRPC_SERVICE], redis=redis_client, audit=audit, js=nc.jetstream())
    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        servicers=[
            Servicer(
                name=GRPC_SERVICE,
                implementation=TaskHandlers(
                    TaskLedger(store, outbox, settings, metrics),
                    watches,
                    settings,
                    task_roles=task_roles(),
                    audit=audit,
                ),
                add_to_server=task_service_pb2_grpc.add_TaskServiceServicer_to_server,
            )
        ],
        registry=registry,
        guard=guard,
        background=[outbox.run, consumer.run, feed.run],
        # Watch streams never end on their own: end them once out of rotation, so clients
        # reconnect to another instance instead of waiting out the grace period.
        on_drain=[feed.close],
        metrics_registry=metrics_registry,
    )
