"""A stand-in for the auth and system services behind the edge, in-process.

It verifies nothing: it reports what reached it, so a test sees what the edge let through and
that the token was forwarded (services verify it again in the real mesh).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import jwt
import nats
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sutazai.auth.v1 import access_pb2, auth_service_pb2, auth_service_pb2_grpc
from sutazai.gateway.resources import EdgePolicy
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.context import CLIENT_ADDRESS_HEADER
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import RegistrySettings
from sutazai.system.v1 import system_service_pb2_grpc
from tests.gateway.edge_harness import (
    SYSTEM_SERVICE,
    Edge,
    StaticSystemService,
    edge_settings,
    listen_on_socket,
    registered_in,
    running_envoy,
    running_gateway,
)
from tests.gateway.tokens import KeyRingFile

AUTH_SERVICE = "sutazai.auth.v1.AuthService"
STAND_IN = "stand-in"
"""The registry name of the stand-in."""
OWNERS = {STAND_IN: frozenset({AUTH_SERVICE, SYSTEM_SERVICE})}
"""What the test gateways let each registry name serve: the stand-in serves both."""

_Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def forwarded_name(context: _Context) -> str:
    """The ``name`` claim of the bearer token the call carried (unverified), or ``""``."""
    metadata = dict(context.invocation_metadata() or ())
    authorization = str(metadata.get("authorization", ""))
    if not authorization.startswith("Bearer "):
        return ""
    claims = jwt.decode(authorization.removeprefix("Bearer "), options={"verify_signature": False})
    return str(claims.get("name", ""))


class EchoAuthService(auth_service_pb2_grpc.AuthServiceServicer):
    """Login (public) and GetMe/SetUserRole (protected) answer with the caller's token name.

    GetMe reports, as the user's ``email``, the client address the edge set
    (``x-sutazai-client-address``).
    """

    async def Login(  # noqa: N802 (gRPC method name)
        self, request: auth_service_pb2.LoginRequest, context: _Context
    ) -> auth_service_pb2.LoginResponse:
        return auth_service_pb2.LoginResponse(
            access_token=f"for-{request.username}", token_type="Bearer"
        )

    async def GetMe(  # noqa: N802 (gRPC method name)
        self, request: auth_service_pb2.GetMeRequest, context: _Context
    ) -> auth_service_pb2.GetMeResponse:
        metadata = dict(context.invocation_metadata() or ())
        return auth_service_pb2.GetMeResponse(
            user=auth_service_pb2.User(
                username=forwarded_name(context),
                email=str(metadata.get(CLIENT_ADDRESS_HEADER, "")),
                role=access_pb2.ROLE_USER,
            )
        )

    async def SetUserRole(  # noqa: N802 (gRPC method name)
        self, request: auth_service_pb2.SetUserRoleRequest, context: _Context
    ) -> auth_service_pb2.SetUserRoleResponse:
        return auth_service_pb2.SetUserRoleResponse(
            user=auth_service_pb2.User(username=request.username, role=request.role)
        )


@asynccontextmanager
async def auth_backend(run_dir: Path) -> AsyncIterator[ServiceInstance]:
    """A grpc.aio server with the stand-in auth and system services and health.

    Yields its instance (not registered), reachable on its socket in ``run_dir``; it registers
    as :data:`STAND_IN`, which the test gateways let serve both services (:data:`OWNERS`).
    """
    instance_id = uuid.uuid4().hex[:8]
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(EchoAuthService(), server)
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(
        StaticSystemService(f"system/{instance_id}"), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    instance = ServiceInstance(
        service=STAND_IN,
        instance_id=instance_id,
        host="127.0.0.1",
        port=server.add_insecure_port("127.0.0.1:0"),
        version="test",
        grpc_services=[AUTH_SERVICE, SYSTEM_SERVICE],
    )
    listen_on_socket(server, run_dir, instance)
    await server.start()
    for service in (AUTH_SERVICE, SYSTEM_SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    try:
        yield instance
    finally:
        await server.stop(0)


@asynccontextmanager
async def edge_in_front(
    nats_url: str, workdir: Path, policy: EdgePolicy
) -> AsyncIterator[tuple[Edge, KeyRingFile]]:
    """A gateway and Envoy enforcing ``policy`` in front of the stand-in auth service.

    Yields the edge and the key ring its tokens are checked against (files in ``workdir``).
    """
    keys = KeyRingFile(workdir / "jwt_keys.json")
    nc = await nats.connect(nats_url)
    try:
        registry = await Registry.open(
            nc.jetstream(), RegistrySettings(bucket=f"edge_{uuid.uuid4().hex[:8]}")
        )
        with edge_settings() as settings:
            async with (
                running_gateway(
                    registry, settings, jwks_file=keys.jwks_path, policy=policy, owners=OWNERS
                ),
                running_envoy(settings, workdir) as proxy,
                auth_backend(settings.run_dir) as instance,
                registered_in(registry, proxy, instance, AUTH_SERVICE),
            ):
                yield proxy, keys
    finally:
        await nc.close()
