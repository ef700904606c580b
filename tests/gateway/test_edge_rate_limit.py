"""The edge rate limit, through a real Envoy with a tiny token bucket."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import nats
import pytest

from sutazai.gateway.resources import EdgePolicy
from sutazai.services.runtime.registry import Registry
from sutazai.services.runtime.settings import RegistrySettings
from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc
from tests.gateway.auth_backend import AUTH_SERVICE, OWNERS, auth_backend
from tests.gateway.edge_harness import (
    Edge,
    edge_settings,
    registered_in,
    running_envoy,
    running_gateway,
)
from tests.gateway.tokens import KeyRingFile

pytestmark = pytest.mark.timeout(120)

BURST = 5


@pytest.fixture(scope="module")
async def edge(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    """Envoy whose bucket holds BURST requests and refills one per second."""
    workdir = tmp_path_factory.mktemp("limited")
    keys = KeyRingFile(workdir / "jwt_keys.json")
    policy = EdgePolicy(rate_limit_burst=BURST, rate_limit_per_second=1)
    nc = await nats.connect(nats_url)
    try:
        registry = await Registry.open(
            nc.jetstream(), RegistrySettings(bucket=f"limit_{uuid.uuid4().hex[:8]}")
        )
        with edge_settings() as settings:
            async with (
                running_gateway(
                    registry, settings, keys_file=keys.path, policy=policy, owners=OWNERS
                ),
                running_envoy(settings, workdir) as proxy,
                auth_backend(settings.run_dir) as instance,
                registered_in(registry, proxy, instance, AUTH_SERVICE),
            ):
                yield proxy
    finally:
        await nc.close()


async def test_rest_burst_over_the_limit_gets_429(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.port}", timeout=5) as http:
        responses = [await http.get("/v1/system/status") for _ in range(BURST * 2)]

    codes = [r.status_code for r in responses]
    assert 200 in codes
    assert 429 in codes, codes
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.headers["x-local-rate-limit"] == "true"
    assert limited.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


async def test_grpc_burst_over_the_limit_gets_resource_exhausted(edge: Edge) -> None:
    codes: list[grpc.StatusCode] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
        stub = system_service_pb2_grpc.SystemServiceStub(channel)
        for _ in range(BURST * 2):
            try:
                await stub.GetStatus(system_service_pb2.GetStatusRequest(), timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())

    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
