"""The instances probe notices a dropped connection at once, not at the next round."""

from __future__ import annotations

import asyncio
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.registry import Registry
from sutazai.services.system.probes import InstancesProbe

pytestmark = pytest.mark.integration  # a real grpc.aio server


class OneInstance:
    """The registry as the probe reads it: one instance."""

    def __init__(self, instance: ServiceInstance) -> None:
        self._instance = instance

    async def list(self) -> list[ServiceInstance]:
        return [self._instance]


async def serving() -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def test_a_dropped_connection_calls_on_lost_at_once() -> None:
    server, port = await serving()
    lost = asyncio.Event()
    instance = ServiceInstance(service="auth", instance_id="abc", host="127.0.0.1", port=port)
    probe = InstancesProbe(cast(Registry, OneInstance(instance)), on_lost=lost.set)
    try:
        [outcome] = await probe()
        assert outcome.healthy
        assert not lost.is_set()

        await server.stop(grace=None)  # the process is gone: its connections close

        async with asyncio.timeout(10):
            await lost.wait()
        [outcome] = await probe()
        assert not outcome.healthy
    finally:
        await probe.close()
        await server.stop(grace=None)
