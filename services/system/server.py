"""Wiring of the system service: connections, probes, prober, handlers, host."""

from __future__ import annotations

import contextlib
import functools
from typing import Final

import httpx
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import open_guard
from sutazai.runtime.deployment import load_catalog
from sutazai.runtime.envoy import EDGE_STAT_PREFIX
from sutazai.runtime.postgres import open_pool
from sutazai.runtime.registry import instance_label
from sutazai.runtime.server import (
    ServiceHost,
    Servicer,
    instance_id_of,
    join_registry,
    serve_until_stopped,
)
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.runtime.sockets import envoy_admin_client
from sutazai.runtime.stream_slots import StreamSlots
from sutazai.services.system.domain import StatusBoard
from sutazai.services.system.domain.inventory import Deployed
from sutazai.services.system.domain.upstreams import service_upstreams
from sutazai.services.system.handlers import SystemHandlers
from sutazai.services.system.log_reader import LogReader
from sutazai.services.system.prober import Prober, follow_registry
from sutazai.services.system.probes import (
    EnvoyProbe,
    InstancesProbe,
    NatsProbe,
    PostgresProbe,
    RedisProbe,
    public_address,
)
from sutazai.services.system.samplers import InventoryWatch, TrafficSampler
from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc

SERVICE_NAME: Final = "system"
"""The table of ``deploy/mesh.toml``, registry key prefix and principal of this service."""
SYSTEM_SERVICE: Final[str] = system_service_pb2.DESCRIPTOR.services_by_name[
    "SystemService"
].full_name


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one instance until SIGTERM/SIGINT or cancellation."""
    await serve_until_stopped(build, mesh, service)


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Create the instance's connections (closed by ``stack``) and its unstarted host."""
    nc, registry = await join_registry(mesh, SERVICE_NAME, stack)
    # min_size=0: the pool must not need PostgreSQL up to start; it reconnects after restarts.
    pool = await open_pool(mesh.postgres_dsn, min_size=0, max_size=2)
    stack.push_async_callback(pool.close)
    redis_client = aioredis.Redis.from_url(
        mesh.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    stack.push_async_callback(redis_client.aclose)
    # The guard's own client (the per-user limiter): the probe client's tight timeouts are
    # meant for probing, not for admitting calls.
    guard_redis = aioredis.Redis.from_url(mesh.redis_url, health_check_interval=10)
    stack.push_async_callback(guard_redis.aclose)
    audit = AuditLog(pool)
    envoy_admin = envoy_admin_client(mesh.envoy_admin_socket, timeout=1.0)
    stack.push_async_callback(envoy_admin.aclose)
    instances = InstancesProbe(registry)
    stack.push_async_callback(instances.close)
    # Instance metrics pages are plain HTTP on loopback ports the registry names; proxies
    # from the environment must not see them.
    scraper = httpx.AsyncClient(timeout=1.0, trust_env=False)
    stack.push_async_callback(scraper.aclose)
    catalog = load_catalog()

    board = StatusBoard()
    prober = Prober(
        [
            PostgresProbe(pool, public_address(mesh.postgres_dsn)),
            RedisProbe(redis_client, public_address(mesh.redis_url)),
            NatsProbe(nc),
            EnvoyProbe(envoy_admin, str(mesh.envoy_admin_socket)),
            instances,
        ],
        board,
        interval=service.probe_interval_seconds,
    )
    # An instance whose connection drops is probed at once (it may be back within a round).
    instances.on_lost = prober.wake
    upstreams = [
        upstream
        for entry in catalog
        for upstream in service_upstreams(entry.name, entry.grpc_services, entry.http_prefixes)
    ]
    traffic = TrafficSampler(
        envoy_admin,
        upstreams,
        edge_stat_prefix=EDGE_STAT_PREFIX,
        interval=service.traffic_interval_seconds,
    )
    inventory = InventoryWatch(
        board,
        registry,
        envoy_admin,
        scraper,
        [Deployed(e.name, e.grpc_services, e.instances, e.http_prefixes) for e in catalog],
    )
    await prober.probe_once()
    # The host's id, chosen here because the handlers report it too.
    instance_id = instance_id_of(service)
    guard = open_guard(mesh, [SYSTEM_SERVICE], redis=guard_redis, audit=audit, js=nc.jetstream())
    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        servicers=[
            Servicer(
                name=SYSTEM_SERVICE,
                implementation=SystemHandlers(
                    board,
                    prober,
                    reporter=instance_label(SERVICE_NAME, instance_id),
                    traffic=traffic,
                    inventory=inventory,
                    streams=StreamSlots(
                        service.max_watch_streams, service.max_watch_streams_per_caller
                    ),
                    logs=LogReader(mesh.state_dir),
                ),
                add_to_server=system_service_pb2_grpc.add_SystemServiceServicer_to_server,
            )
        ],
        registry=registry,
        guard=guard,
        background=[
            prober.run,
            functools.partial(follow_registry, registry, prober),
            traffic.run,
            inventory.run,
        ],
        # Watch streams never end on their own: end them once out of rotation, so clients
        # reconnect to another instance instead of waiting out the grace period.
        on_drain=[board.close, traffic.samples.close, inventory.views.close],
        instance_id=instance_id,
    )
