"""Real processes for the edge tests: Envoy bootstrapped to the in-process gateway, a backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sutazai.gateway.bootstrap import render_bootstrap
from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.registry_trust import RegistryTrust
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.server import Gateway
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.deployment import grpc_owners, load_catalog
from sutazai.runtime.registry import Registry, instance_key
from sutazai.runtime.settings import EnvoySettings, MeshSettings
from sutazai.runtime.sockets import (
    envoy_admin_client,
    grpc_target,
    instance_socket,
    prepare_run_dir,
)
from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc
from tests.gateway.processes import ENVOY, read_log, start_process, stop_process
from tests.harness.mesh import UNLIMITED_EDGE, free_ports, new_state_dir, remove_state_dir
from tests.harness.waiting import wait_for

SYSTEM_SERVICE = "sutazai.system.v1.SystemService"
UNLIMITED = EdgePolicy.from_settings(MeshSettings(edge=UNLIMITED_EDGE))
"""An edge whose limits no load test reaches."""
NODE_ID = "test-edge"


@contextmanager
def edge_settings() -> Iterator[MeshSettings]:
    """Settings of a test edge: a free edge port, sockets in a short private state directory.

    The gateway and Envoy of one test share them: Envoy's bootstrap points at the gateway's
    socket, and the gateway accepts instance sockets in this run directory only.
    """
    state_dir = new_state_dir()
    (port,) = free_ports(1)
    try:
        yield MeshSettings(
            host="127.0.0.1",
            state_dir=state_dir,
            envoy=EnvoySettings(port=port, base_id=free_ports(1)[0]),
        )
    finally:
        remove_state_dir(state_dir)


def endpoint(instance: ServiceInstance) -> str:
    """How Envoy's ``/clusters`` names an instance's endpoint: its socket, else host:port."""
    return instance.socket_path or f"{instance.host}:{instance.port}"


def listen_on_socket(server: grpc.aio.Server, run_dir: Path, instance: ServiceInstance) -> None:
    """Also serve ``instance`` on its socket in ``run_dir`` (as the runtime does); advertise it."""
    socket = instance_socket(prepare_run_dir(run_dir), instance.service, instance.instance_id)
    assert server.add_insecure_port(grpc_target(socket)) != 0, socket
    instance.socket_path = str(socket)


@dataclass(frozen=True, slots=True)
class Edge:
    """A running Envoy."""

    port: int
    admin_socket: Path
    access_log: Path
    log: Path

    def admin(self) -> httpx.AsyncClient:
        """A client of the admin interface (over its Unix socket)."""
        return envoy_admin_client(self.admin_socket)

    async def host_health(self, http: httpx.AsyncClient, cluster: str) -> dict[str, str]:
        """``{endpoint: health flags}`` of a cluster, from admin ``/clusters``.

        ``http`` is a client of the admin interface (:meth:`admin`).
        """
        text = (await http.get("/clusters")).text
        flags: dict[str, str] = {}
        for line in text.splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == cluster and parts[2] == "health_flags":
                flags[parts[1]] = parts[3]
        return flags


@asynccontextmanager
async def running_gateway(
    registry: Registry,
    settings: MeshSettings,
    *,
    jwks_file: Path,
    policy: EdgePolicy | None = None,
    owners: Mapping[str, frozenset[str]] | None = None,
    catalog: ServiceCatalog | None = None,
    keys_poll_interval: float = 0.1,
) -> AsyncIterator[Gateway]:
    """The gateway in-process on ``settings.gateway_socket``, following ``registry``.

    It serves the services of ``catalog`` (by default the packaged descriptor set), routes
    each to the names ``owners`` gives (by default ``deploy/mesh.toml``) and checks tokens
    against the public keys in ``jwks_file``.
    """

    async def open_registry() -> Registry:
        return registry

    gateway = Gateway(
        open_registry,
        catalog=ServiceCatalog.packaged() if catalog is None else catalog,
        edge_host="127.0.0.1",
        edge_port=settings.envoy.port,
        jwks_file=jwks_file,
        trust=RegistryTrust(
            grpc_owners(load_catalog()) if owners is None else owners, settings.run_dir
        ),
        policy=policy,
        keys_poll_interval=keys_poll_interval,
    )
    await gateway.start(settings.gateway_socket)
    try:
        yield gateway
    finally:
        await gateway.stop()


@asynccontextmanager
async def registered_in(
    registry: Registry, edge: Edge, instance: ServiceInstance, service: str
) -> AsyncIterator[ServiceInstance]:
    """``instance`` registered and healthy in Envoy's ``service`` cluster; removed on exit."""
    address = endpoint(instance)
    async with edge.admin() as http:

        async def healthy() -> bool:
            return (await edge.host_health(http, service)).get(address) == "healthy"

        async def gone() -> bool:
            return address not in await edge.host_health(http, service)

        await registry.put(instance)
        await wait_for(
            healthy, timeout=15, message=f"{instance_key(instance)} ({address}) healthy in envoy"
        )
        try:
            yield instance
        finally:
            await registry.remove(instance)
            await wait_for(gone, timeout=15, message=f"{address} gone from envoy")


@asynccontextmanager
async def running_envoy(settings: MeshSettings, workdir: Path) -> AsyncIterator[Edge]:
    """Envoy bootstrapped to the gateway of ``settings``, live (admin /ready) on exit.

    Its configuration and logs go to ``workdir``; its admin socket is in the run directory.
    """
    prepare_run_dir(settings.run_dir)
    config = workdir / "bootstrap.yaml"
    config.write_text(render_bootstrap(settings, node_id=NODE_ID), encoding="utf-8")
    edge = Edge(
        settings.envoy.port,
        settings.envoy_admin_socket,
        workdir / "access.log",
        workdir / "envoy.log",
    )
    process = start_process(
        [
            str(ENVOY),
            "-c",
            str(config),
            "--base-id",
            str(settings.envoy.base_id),
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
        async with edge.admin() as http:

            async def live() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"envoy exited: {read_log(edge.log)}")
                try:
                    return (await http.get("/ready")).status_code == 200
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
async def system_backend(run_dir: Path) -> AsyncIterator[ServiceInstance]:
    """A grpc.aio server with SystemService and health; yields its (unregistered) instance.

    It listens on a loopback port and on its socket in ``run_dir`` (where Envoy reaches it).
    """
    instance_id = uuid.uuid4().hex[:8]
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(
        StaticSystemService(f"system/{instance_id}"), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    instance = ServiceInstance(
        service="system",
        instance_id=instance_id,
        host="127.0.0.1",
        port=server.add_insecure_port("127.0.0.1:0"),
        version="test",
        grpc_services=[SYSTEM_SERVICE],
    )
    listen_on_socket(server, run_dir, instance)
    await server.start()
    await health_servicer.set(SYSTEM_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    try:
        yield instance
    finally:
        await server.stop(0)
