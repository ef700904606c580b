"""The ADS service over a real grpc.aio server, with the test playing Envoy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.rpc import Status
from prometheus_client import CollectorRegistry

from sutazai.gateway.ads import ADS_METHOD, ADS_SERVICE, AggregatedDiscoveryService
from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.snapshot import CLUSTER_TYPE, ENDPOINT_TYPE, SnapshotBuilder, SnapshotCache
from sutazai.gateway.xds_status import XdsStatus
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from tests.gateway.tokens import TEST_JWKS
from tests.harness.waiting import wait_for

SYSTEM_SERVICE = "sutazai.system.v1.SystemService"
BUILDER = SnapshotBuilder(
    ServiceCatalog.packaged(), EdgePolicy(), host="127.0.0.1", port=10005, jwks=TEST_JWKS
)


class FakeEnvoy:
    """One ADS stream: send requests, read responses."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._requests: asyncio.Queue[DiscoveryRequest | None] = asyncio.Queue()
        method = channel.stream_stream(
            f"/{ADS_SERVICE}/{ADS_METHOD}",
            request_serializer=bytes,
            response_deserializer=DiscoveryResponse.parse,
        )
        self.call = method(self._outgoing())

    async def _outgoing(self) -> AsyncIterator[DiscoveryRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    def send(self, request: DiscoveryRequest) -> None:
        request.node = Node(id="fake-envoy")
        self._requests.put_nowait(request)

    async def receive(self) -> DiscoveryResponse:
        response = await asyncio.wait_for(self.call.read(), 5)
        assert isinstance(response, DiscoveryResponse)
        return response

    def close(self) -> None:
        self._requests.put_nowait(None)


@pytest.fixture
async def ads() -> AsyncIterator[tuple[SnapshotCache, XdsStatus, CollectorRegistry, int]]:
    cache, metrics = SnapshotCache(), CollectorRegistry()
    status = XdsStatus(metrics)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers([AggregatedDiscoveryService(cache, status).rpc_handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield cache, status, metrics, port
    await server.stop(0)


@pytest.fixture
async def envoy(
    ads: tuple[SnapshotCache, XdsStatus, CollectorRegistry, int],
) -> AsyncIterator[FakeEnvoy]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ads[3]}") as channel:
        client = FakeEnvoy(channel)
        yield client
        client.close()


async def test_first_snapshot_answers_waiting_requests_then_changes_are_pushed(
    ads: tuple[SnapshotCache, XdsStatus, CollectorRegistry, int], envoy: FakeEnvoy
) -> None:
    cache, status, _, _ = ads
    envoy.send(DiscoveryRequest(type_url=CLUSTER_TYPE))
    envoy.send(DiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names=[SYSTEM_SERVICE]))

    cache.set(BUILDER.build([]))
    clusters, endpoints = await envoy.receive(), await envoy.receive()
    assert (clusters.type_url, endpoints.type_url) == (CLUSTER_TYPE, ENDPOINT_TYPE)
    envoy.send(
        DiscoveryRequest(
            type_url=ENDPOINT_TYPE,
            resource_names=[SYSTEM_SERVICE],
            version_info=endpoints.version_info,
            response_nonce=endpoints.nonce,
        )
    )
    await wait_for(
        lambda: status.acked_version("fake-envoy", ENDPOINT_TYPE) == endpoints.version_info, 5
    )

    instance = ServiceInstance(
        service="system",
        instance_id="a",
        host="127.0.0.1",
        port=5001,
        grpc_services=[SYSTEM_SERVICE],
    )
    cache.set(BUILDER.build([instance]))
    pushed = await envoy.receive()

    assert pushed.type_url == ENDPOINT_TYPE, "only the changed type is pushed"
    assert pushed.version_info != endpoints.version_info
    assert pushed.nonce != endpoints.nonce


async def test_nack_over_the_wire_is_recorded(
    ads: tuple[SnapshotCache, XdsStatus, CollectorRegistry, int], envoy: FakeEnvoy
) -> None:
    cache, status, metrics, _ = ads
    cache.set(BUILDER.build([]))
    envoy.send(DiscoveryRequest(type_url=CLUSTER_TYPE))
    response = await envoy.receive()

    envoy.send(
        DiscoveryRequest(
            type_url=CLUSTER_TYPE,
            response_nonce=response.nonce,
            error_detail=Status(code=3, message="Proto constraint validation failed"),
        )
    )

    await wait_for(lambda: status.last_nack(CLUSTER_TYPE) is not None, 5, message="NACK seen")
    nack = status.last_nack(CLUSTER_TYPE)
    assert nack is not None
    assert nack.message == "Proto constraint validation failed"
    assert nack.rejected_version == response.version_info
    assert (
        metrics.get_sample_value("sutazai_gateway_xds_nacks_total", {"type_url": CLUSTER_TYPE})
        == 1.0
    )


async def test_open_streams_are_counted(
    ads: tuple[SnapshotCache, XdsStatus, CollectorRegistry, int], envoy: FakeEnvoy
) -> None:
    cache, _, metrics, _ = ads
    cache.set(BUILDER.build([]))
    envoy.send(DiscoveryRequest(type_url=CLUSTER_TYPE))
    await envoy.receive()
    assert metrics.get_sample_value("sutazai_gateway_xds_streams") == 1.0

    envoy.close()

    await wait_for(lambda: metrics.get_sample_value("sutazai_gateway_xds_streams") == 0.0, 5)
