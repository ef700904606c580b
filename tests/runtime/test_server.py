"""ServiceHost on real NATS: registration, and a SIGTERM-style drain that loses no call."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.registry import Registry
from sutazai.runtime.server import ServiceHost, Servicer
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.runtime.sockets import grpc_target
from tests.harness.waiting import wait_for

SERVICE = "test.v1.SlowService"


class Slow:
    """A handler that holds each call until the test lets it go."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def hold(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.entered.set()
        await self.release.wait()
        return b"done"

    def add_to_server(self, implementation: object, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            self.hold, request_deserializer=bytes, response_serializer=bytes
        )
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, {"Hold": handler})]
        )


@pytest.fixture
async def registry(mesh_settings: MeshSettings) -> AsyncIterator[Registry]:
    nc = await connect_nats(mesh_settings, name="test-server")
    try:
        yield await Registry.open(nc.jetstream(), mesh_settings.registry)
    finally:
        await nc.close()


async def registered_ports(registry: Registry) -> set[int]:
    return {i.port for i in await registry.list() if i.service == "slow"}


async def test_drain_deregisters_then_lets_in_flight_calls_finish(
    mesh_settings: MeshSettings, registry: Registry
) -> None:
    slow = Slow()
    host = ServiceHost(
        name="slow",
        mesh=mesh_settings,
        settings=ServiceSettings(metrics_port=-1, grace_seconds=10),
        servicers=[Servicer(SERVICE, slow, slow.add_to_server)],
        registry=registry,
    )
    await host.start()
    port = int(host.address.rpartition(":")[2])
    (instance,) = [i for i in await registry.list() if i.port == port]
    assert (instance.service, instance.pid, list(instance.grpc_services)) == (
        "slow",
        os.getpid(),
        [SERVICE],
    )
    # Envoy reaches it on its socket, named after its registry key, private to the mesh's user.
    assert instance.socket_path == str(host.socket)
    assert host.socket == mesh_settings.run_dir / f"slow.{host.instance_id}.sock"
    assert stat.S_IMODE(host.socket.stat().st_mode) == 0o600
    async with grpc.aio.insecure_channel(grpc_target(host.socket)) as over_socket:
        checked = await health_pb2_grpc.HealthStub(over_socket).Check(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=5
        )
        assert checked.status == health_pb2.HealthCheckResponse.SERVING

    async with grpc.aio.insecure_channel(host.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING

        in_flight = asyncio.ensure_future(channel.unary_unary(f"/{SERVICE}/Hold")(b"", timeout=30))
        await asyncio.wait_for(slow.entered.wait(), timeout=5)
        stopping = asyncio.ensure_future(host.stop())

        async def deregistered() -> bool:
            return port not in await registered_ports(registry)

        # Envoy stops routing here first (the registry entry goes), while the call still runs.
        await wait_for(deregistered, timeout=5, message="instance deregistered")
        assert not in_flight.done()
        slow.release.set()
        assert await in_flight == b"done"
        await asyncio.wait_for(stopping, timeout=15)
    assert not host.socket.exists(), "a stopped instance leaves no socket behind"
