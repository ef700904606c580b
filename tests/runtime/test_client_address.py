"""Which client address a service's per-client limit believes: the peer's, unless it is Envoy.

A real ServiceHost (TCP port and Unix socket) with a real guard, Redis and NATS; Register is
declared public and rate limited here (the guard then keys anonymous callers by client address)
and answered by a stand-in after the guard admitted it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis

from sutazai.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from sutazai.runtime.audit import AuditLog
from sutazai.runtime.auth import Guard, open_authenticator, revocation_bucket
from sutazai.runtime.context import CLIENT_ADDRESS_HEADER
from sutazai.runtime.key_files import ensure_key_ring
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.ratelimit import RateLimiter
from sutazai.runtime.roles import MethodAccess, Role
from sutazai.runtime.server import ServiceHost, Servicer
from sutazai.runtime.settings import MeshSettings, ServiceSettings
from sutazai.runtime.sockets import grpc_target

AUTH_SERVICE = "sutazai.auth.v1.AuthService"
BURST = 3
FORGED = [f"203.0.113.{n}" for n in range(1, 2 * BURST + 1)]
"""Addresses a caller claims (TEST-NET-3: no real client has them)."""


class Registrar(auth_service_pb2_grpc.AuthServiceServicer):
    async def Register(  # noqa: N802 (gRPC method name)
        self, request: auth_service_pb2.RegisterRequest, context: object
    ) -> auth_service_pb2.RegisterResponse:
        return auth_service_pb2.RegisterResponse()


async def forget_buckets(client: aioredis.Redis, address: str) -> None:
    """Delete the limiter buckets of ``address``, so other tests start from full ones."""
    async for key in client.scan_iter(match=f"*peer:{address}"):
        await client.delete(key)


@pytest.fixture
async def host(mesh_settings: MeshSettings) -> AsyncIterator[tuple[ServiceHost, aioredis.Redis]]:
    ensure_key_ring(mesh_settings.keys_file, mesh_settings.jwks_file)
    async with contextlib.AsyncExitStack() as stack:
        auth = mesh_settings.as_principal("auth")
        pool = await asyncpg.create_pool(auth.postgres_dsn, min_size=1, max_size=2)
        stack.push_async_callback(pool.close)
        client = aioredis.Redis.from_url(auth.redis_url)
        stack.push_async_callback(client.aclose)
        nc = await connect_nats(mesh_settings, name="client-address")
        stack.push_async_callback(nc.close)
        register = MethodAccess(public=True, role=Role.ANONYMOUS, audited=False, rate_limited=True)
        guard = Guard(
            {f"/{AUTH_SERVICE}/Register": register},
            open_authenticator(
                mesh_settings,
                revocation_bucket(nc.jetstream(), mesh_settings.auth.revocations_bucket),
            ),
            RateLimiter(
                client, key_prefix=auth.redis.key_prefix("auth"), per_second=0.01, burst=BURST
            ),
            AuditLog(pool),
        )
        service = ServiceHost(
            name="registrar",
            mesh=mesh_settings,
            settings=ServiceSettings(metrics_port=-1, grace_seconds=0),
            servicers=[
                Servicer(
                    AUTH_SERVICE,
                    Registrar(),
                    auth_service_pb2_grpc.add_AuthServiceServicer_to_server,
                )
            ],
            registry=None,
            guard=guard,
        )
        await forget_buckets(client, "127.0.0.1")
        await service.start()
        stack.push_async_callback(forget_buckets, client, "127.0.0.1")
        stack.push_async_callback(service.stop)
        yield service, client


async def register(channel: grpc.aio.Channel, address: str) -> grpc.StatusCode:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    metadata = ((CLIENT_ADDRESS_HEADER, address), ("x-forwarded-for", address))
    try:
        await stub.Register(auth_service_pb2.RegisterRequest(), metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_tcp_callers_are_limited_by_their_peer_whatever_they_claim(
    host: tuple[ServiceHost, aioredis.Redis],
) -> None:
    service, client = host
    async with grpc.aio.insecure_channel(service.address) as channel:
        codes = [await register(channel, address) for address in FORGED]

    assert codes == [grpc.StatusCode.OK] * BURST + [grpc.StatusCode.RESOURCE_EXHAUSTED] * BURST
    buckets = [key.decode() async for key in client.scan_iter(match="*peer:*")]
    assert not [key for key in buckets if "203.0.113." in key], "no forged address got a bucket"


async def test_socket_peers_are_limited_by_the_address_envoy_forwards(
    host: tuple[ServiceHost, aioredis.Redis],
) -> None:
    service, client = host
    async with grpc.aio.insecure_channel(service.address) as tcp:
        assert [await register(tcp, FORGED[0]) for _ in range(BURST + 1)][-1] == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
    try:
        async with grpc.aio.insecure_channel(grpc_target(service.socket)) as envoy_side:
            # Each forwarded client has its own bucket, untouched by the drained TCP one.
            codes = [await register(envoy_side, address) for address in FORGED[:BURST]]
            assert codes == [grpc.StatusCode.OK] * BURST
            same_client = [await register(envoy_side, FORGED[0]) for _ in range(BURST)]
            assert same_client[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for address in FORGED:
            await forget_buckets(client, address)
