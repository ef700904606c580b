"""Real processes for the edge tests: Envoy bootstrapped to the in-process gateway, a backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sutazai.gateway.bootstrap import render_bootstrap
from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.server import Gateway
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.services.runtime.registry import Registry
from sutazai.services.runtime.settings import EnvoySettings, GatewaySettings, MeshSettings
from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc
from tests.gateway.processes import ENVOY, read_log, start_process, stop_process
from tests.harness.mesh import UNLIMITED_EDGE, free_ports
from tests.harness.waiting import wait_for

SYSTEM_SERVICE = "sutazai.system.v1.SystemService"
UNLIMITED = EdgePolicy.from_settings(MeshSettings(edge=UNLIMITED_EDGE))
"""An edge whose limits no load test reaches."""
NODE_ID = "test-edge"


@dataclass(frozen=True, slots=True)
class Edge:
    """A running Envoy."""

    port: int
    admin_url: str
    access_log: Path
    log: Path

    async def host_health(self, http: httpx.AsyncClient, cluster: str) -> dict[str, str]:
        """``{host:port: health flags}`` of a cluster, from admin ``/clusters``."""
        text = (await http.get(f"{self.admin_url}/clusters")).text
        flags: dict[str, str] = {}
        for line in text.splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == cluster and parts[2] == "health_flags":
                flags[parts[1]] = parts[3]
        return flags


@asynccontextmanager
async def running_gateway(
    registry: Registry,
    *,
    edge_port: int,
    jwks_file: Path,
    policy: EdgePolicy | None = None,
    keys_poll_interval: float = 0.1,
) -> AsyncIterator[Gateway]:
    """The gateway in-process on a free port, following ``registry`` and the JWKS ``jwks_file``."""

    async def open_registry() -> Registry:
        return registry

    gateway = Gateway(
        open_registry,
        catalog=ServiceCatalog.packaged(),
        edge_host="127.0.0.1",
        edge_port=edge_port,
        jwks_file=jwks_file,
        policy=policy,
        keys_poll_interval=keys_poll_interval,
    )
    await gateway.start("127.0.0.1", 0)
    try:
        yield gateway
    finally:
        await gateway.stop()


@asynccontextmanager
async def registered_in(
    registry: Registry, edge: Edge, instance: ServiceInstance, service: str
) -> AsyncIterator[ServiceInstance]:
    """``instance`` registered and healthy in Envoy's ``service`` cluster; removed on exit."""
    address = f"{instance.host}:{instance.port}"
    async with httpx.AsyncClient(timeout=2) as http:

        async def healthy() -> bool:
            return (await edge.host_health(http, service)).get(address) == "healthy"

        async def gone() -> bool:
            return address not in await edge.host_health(http, service)

        await registry.put(instance)
        await wait_for(healthy, timeout=15, message=f"{address} healthy in envoy")
        try:
            yield instance
        finally:
            await registry.remove(instance)
            await wait_for(gone, timeout=15, message=f"{address} gone from envoy")


@asynccontextmanager
async def running_envoy(gateway_port: int, port: int, workdir: Path) -> AsyncIterator[Edge]:
    """Envoy bootstrapped to the gateway on ``gateway_port``, live (admin /ready) on exit.

    ``port`` must be the edge port the gateway was configured with (its listener arrives
    over xDS).
    """
    admin_port, base_id = free_ports(2)
    settings = MeshSettings(
        host="127.0.0.1",
        state_dir=workdir,
        envoy=EnvoySettings(port=port, admin_port=admin_port, base_id=base_id),
        gateway=GatewaySettings(port=gateway_port),
    )
    config = workdir / "bootstrap.yaml"
    config.write_text(render_bootstrap(settings, node_id=NODE_ID), encoding="utf-8")
    edge = Edge(port, settings.envoy_admin_url, workdir / "access.log", workdir / "envoy.log")
    process = start_process(
        [
            str(ENVOY),
            "-c",
            str(config),
            "--base-id",
            str(base_id),
            "--concurrency",
            "1",
            "--log-level",
            "warning",
            # Access-log lines reach the file within 100 ms instead of 10 s.
            "--file-flush-interval-msec",
            "100",
        ],
        log=edge.log,
        stdout=edge.access_log,
    )
    try:
        async with httpx.AsyncClient(timeout=2) as http:

            async def live() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"envoy exited: {read_log(edge.log)}")
                try:
                    return (await http.get(f"{edge.admin_url}/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(live, timeout=30, message="envoy live")
        yield edge
    finally:
        stop_process(process)


class StaticSystemService(system_service_pb2_grpc.SystemServiceServicer):
    """Answers GetStatus with what it is told; stands in for the system service."""

    def __init__(self, reported_by: str) -> None:
        self.reported_by = reported_by

    async def GetStatus(  # noqa: N802 (gRPC method name)
        self,
        request: system_service_pb2.GetStatusRequest,
        context: grpc.aio.ServicerContext[
            system_service_pb2.GetStatusRequest, system_service_pb2.GetStatusResponse
        ],
    ) -> system_service_pb2.GetStatusResponse:
        return system_service_pb2.GetStatusResponse(
            overall=system_service_pb2.HEALTHY,
            reported_by=self.reported_by,
            components=[
                system_service_pb2.ComponentStatus(
                    name="nats",
                    kind=system_service_pb2.COMPONENT_KIND_INFRASTRUCTURE,
                    state=system_service_pb2.COMPONENT_STATE_HEALTHY,
                )
            ],
        )


@asynccontextmanager
async def system_backend() -> AsyncIterator[ServiceInstance]:
    """A grpc.aio server with SystemService and health; yields its (unregistered) instance."""
    instance_id = uuid.uuid4().hex[:8]
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(
        StaticSystemService(f"system/{instance_id}"), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health_servicer.set(SYSTEM_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    try:
        yield ServiceInstance(
            service="system",
            instance_id=instance_id,
            host="127.0.0.1",
            port=port,
            version="test",
            grpc_services=[SYSTEM_SERVICE],
        )
    finally:
        await server.stop(0)
