"""A system-service stand-in as its own process, so a test can SIGKILL it.

Usage: ``python backend_process.py PORT SOCKET NAME``; serves on 127.0.0.1:PORT and the Unix
socket SOCKET until killed.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc

SYSTEM_SERVICE = "sutazai.system.v1.SystemService"


class System(system_service_pb2_grpc.SystemServiceServicer):
    def __init__(self, name: str) -> None:
        self._name = name

    async def GetStatus(  # noqa: N802 (gRPC method name)
        self, request: system_service_pb2.GetStatusRequest, context: object
    ) -> system_service_pb2.GetStatusResponse:
        return system_service_pb2.GetStatusResponse(reported_by=self._name)


async def serve(port: int, socket: str, name: str) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(System(name), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        raise SystemExit(f"cannot bind 127.0.0.1:{port}")
    if server.add_insecure_port(f"unix:{socket}") == 0:
        raise SystemExit(f"cannot bind {socket}")
    await server.start()
    await health_servicer.set(SYSTEM_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
