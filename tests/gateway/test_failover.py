"""An instance dies (SIGKILL) under steady traffic through Envoy: no call fails."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.registry_trust import RegistryTrust
from sutazai.gateway.server import Gateway
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.deployment import grpc_owners, load_catalog
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings, RegistrySettings
from sutazai.runtime.sockets import instance_socket, prepare_run_dir
from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc
from tests.gateway.edge_harness import (
    SYSTEM_SERVICE,
    UNLIMITED,
    Edge,
    edge_settings,
    endpoint,
    running_envoy,
)
from tests.gateway.processes import start_process, stop_process
from tests.gateway.tokens import KeyRingFile
from tests.harness.mesh import free_ports
from tests.harness.waiting import wait_for

BACKEND = Path(__file__).with_name("backend_process.py")

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def backend(
    name: str, settings: MeshSettings, workdir: Path
) -> AsyncIterator[tuple[ServiceInstance, int]]:
    """A backend process serving (on its socket in the run directory); yields instance, pid."""
    (port,) = free_ports(1)
    socket = instance_socket(prepare_run_dir(settings.run_dir), "system", name)
    process = start_process(
        [sys.executable, str(BACKEND), str(port), str(socket), name], log=workdir / f"{name}.log"
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"backend {name} exited")
                request = health_pb2.HealthCheckRequest(service=SYSTEM_SERVICE)
                try:
                    response = await health.Check(request, timeout=1)
                except grpc.aio.AioRpcError:
                    return False
                return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

            await wait_for(serving, timeout=20, message=f"backend {name} serving")
        yield (
            ServiceInstance(
                service="system",
                instance_id=name,
                host="127.0.0.1",
                port=port,
                socket_path=str(socket),
                grpc_services=[SYSTEM_SERVICE],
            ),
            process.pid,
        )
    finally:
        stop_process(process)


async def test_sigkill_under_load_fails_no_call(nats_url: str, tmp_path: Path) -> None:
    with edge_settings() as settings:
        await _sigkill_under_load(nats_url, settings, tmp_path)


async def _sigkill_under_load(nats_url: str, settings: MeshSettings, tmp_path: Path) -> None:
    nc = await nats.connect(nats_url)
    registry = await Registry.open(
        nc.jetstream(), RegistrySettings(bucket=f"failover_{uuid.uuid4().hex[:8]}", ttl_seconds=300)
    )

    async def open_registry() -> Registry:
        return registry

    gateway = Gateway(
        open_registry,
        catalog=ServiceCatalog.packaged(),
        edge_host="127.0.0.1",
        edge_port=settings.envoy.port,
        jwks_file=KeyRingFile(tmp_path / "jwt_keys.json").jwks_path,
        trust=RegistryTrust(grpc_owners(load_catalog()), settings.run_dir),
        # Steady traffic from four clients: far above the default edge rate limits.
        policy=UNLIMITED,
    )
    await gateway.start(settings.gateway_socket)
    try:
        async with (
            running_envoy(settings, tmp_path) as edge,
            backend("a", settings, tmp_path) as (a, a_pid),
            backend("b", settings, tmp_path) as (b, _),
            edge.admin() as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as channel,
        ):
            await registry.put(a)
            await registry.put(b)
            await wait_for(
                lambda: both_healthy(edge, http, [a, b]), timeout=15, message="a, b healthy"
            )
            await _steady_traffic_survives_kill(channel, edge, http, a, a_pid)
    finally:
        await gateway.stop()
        await nc.close()


async def both_healthy(
    edge: Edge, http: httpx.AsyncClient, instances: list[ServiceInstance]
) -> bool:
    flags = await edge.host_health(http, SYSTEM_SERVICE)
    return all(flags.get(endpoint(i)) == "healthy" for i in instances)


async def _steady_traffic_survives_kill(
    channel: grpc.aio.Channel,
    edge: Edge,
    http: httpx.AsyncClient,
    victim: ServiceInstance,
    victim_pid: int,
) -> None:
    stub = system_service_pb2_grpc.SystemServiceStub(channel)
    answered: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            try:
                response = await stub.GetStatus(system_service_pb2.GetStatusRequest(), timeout=5)
                answered.append(response.reported_by)
            except grpc.aio.AioRpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")

    clients = [asyncio.create_task(client()) for _ in range(4)]
    try:
        await wait_for(lambda: {"a", "b"} <= set(answered), timeout=10, message="both answer")
        os.kill(victim_pid, signal.SIGKILL)
        killed_at = len(answered)
        address = endpoint(victim)

        async def victim_unhealthy() -> bool:
            flags = await edge.host_health(http, SYSTEM_SERVICE)
            return flags.get(address, "") not in ("", "healthy")

        await wait_for(victim_unhealthy, timeout=15, message="dead host marked unhealthy")
        await wait_for(lambda: len(answered) > killed_at + 100, timeout=15, message="traffic")
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert failures == []
    assert answered[-50:] == ["b"] * 50
