"""Mesh-wide ``grpc.health.v1`` answered by the gateway.

``""`` is SERVING while the gateway runs. Each mesh service is SERVING iff the registry holds at
least one routable instance serving it, so ``grpc_health_probe``/``grpcurl`` through Envoy can
ask "is there anything behind this service name?".
"""

from __future__ import annotations

from collections.abc import Iterable

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from sutazai.gateway.resources import is_routable
from sutazai.registry.v1.registry_pb2 import ServiceInstance

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class MeshHealth:
    """Keeps a health servicer's statuses in step with the registry."""

    def __init__(self, servicer: health_aio.HealthServicer, service_names: Iterable[str]) -> None:
        self._servicer = servicer
        self._names = tuple(service_names)
        self._serving: dict[str, bool] = {}

    @property
    def servicer(self) -> health_aio.HealthServicer:
        """The servicer to register on the gateway's server."""
        return self._servicer

    async def start(self) -> None:
        """The gateway is up; no mesh service is known to be serving yet."""
        await self._servicer.set("", SERVING)
        await self.update(())

    async def update(self, instances: Iterable[ServiceInstance]) -> None:
        """Recompute every mesh service's status from the registry's instances."""
        serving = dict.fromkeys(self._names, False)
        for instance in instances:
            if not is_routable(instance):
                continue
            for name in instance.grpc_services:
                if name in serving:
                    serving[name] = True
        for name, up in serving.items():
            if self._serving.get(name) != up:
                await self._servicer.set(name, SERVING if up else NOT_SERVING)
        self._serving = serving

    async def shutdown(self) -> None:
        """Report NOT_SERVING for everything (the gateway is stopping)."""
        await self._servicer.enter_graceful_shutdown()
