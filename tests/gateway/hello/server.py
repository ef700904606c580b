"""Wiring of the hello service: registry, handlers, host.

A real service also opens its guard here (``open_guard``, over Redis, the audit log and the
revocation bucket) so that its ``(sutazai.auth.v1.access)`` options are enforced inside the
service too; this one runs on a bare NATS and leaves that to the edge.
"""

from __future__ import annotations

import contextlib

from sutazai.hello.v1 import hello_service_pb2_grpc as pb_grpc
from sutazai.runtime.server import ServiceHost, Servicer, join_registry, serve_until_stopped
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from tests.gateway.hello.domain import Greeter
from tests.gateway.hello.handlers import HelloHandlers

SERVICE_NAME = "hello"
"""Its table in mesh.toml, its registry keys, its principal."""
GRPC_SERVICE = "sutazai.hello.v1.HelloService"


async def serve(mesh: MeshSettings, service: ServiceSettings) -> None:
    """Run one instance until SIGTERM/SIGINT or cancellation."""
    await serve_until_stopped(build, mesh, service)


async def build(
    mesh: MeshSettings, service: ServiceSettings, stack: contextlib.AsyncExitStack
) -> ServiceHost:
    """Join the registry (closed by ``stack``) and make the unstarted host."""
    _, registry = await join_registry(mesh, SERVICE_NAME, stack)
    return ServiceHost(
        name=SERVICE_NAME,
        mesh=mesh,
        settings=service,
        servicers=[
            Servicer(
                name=GRPC_SERVICE,
                implementation=HelloHandlers(Greeter()),
                add_to_server=pb_grpc.add_HelloServiceServicer_to_server,
            )
        ],
        registry=registry,
    )
