"""End to end through a real Envoy configured by the gateway from a real NATS registry."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import grpc
import httpx
import nats
import pytest
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterLbPolicy
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sutazai.gateway.catalog import REFLECTION_V1_SERVICE
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.server import Gateway
from sutazai.gateway.snapshot import CLUSTER_TYPE, ResourceSet
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import AuthSettings, MeshSettings, RegistrySettings
from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc
from tests.gateway.edge_harness import (
    NODE_ID,
    SYSTEM_SERVICE,
    Edge,
    edge_settings,
    endpoint,
    running_envoy,
    running_gateway,
    system_backend,
)
from tests.gateway.processes import read_log
from tests.gateway.tokens import ISSUER, KeyRingFile, sign
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
async def registry(nats_url: str) -> AsyncIterator[Registry]:
    nc = await nats.connect(nats_url)
    settings = RegistrySettings(bucket=f"edge_{uuid.uuid4().hex[:8]}", ttl_seconds=300)
    yield await Registry.open(nc.jetstream(), settings)
    await nc.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyRingFile:
    return KeyRingFile(tmp_path_factory.mktemp("keys") / "jwt_keys.json")


@pytest.fixture(scope="module")
def settings() -> Iterator[MeshSettings]:
    with edge_settings() as settings:
        yield settings


@pytest.fixture(scope="module")
async def control_plane(
    registry: Registry, settings: MeshSettings, keys: KeyRingFile
) -> AsyncIterator[Gateway]:
    async with running_gateway(
        registry,
        settings,
        jwks_file=keys.jwks_path,
        policy=EdgePolicy(auth=AuthSettings(issuer=ISSUER)),
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def token_metadata(keys: KeyRingFile) -> tuple[tuple[str, str]]:
    """gRPC metadata of a signed-in caller."""
    return (("authorization", f"Bearer {sign(keys.ring.signing)}"),)


@pytest.fixture(scope="module")
async def edge(
    control_plane: Gateway, settings: MeshSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Edge]:
    workdir = tmp_path_factory.mktemp("envoy")
    async with running_envoy(settings, workdir) as proxy:
        yield proxy


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def admin(edge: Edge) -> AsyncIterator[httpx.AsyncClient]:
    async with edge.admin() as client:
        yield client


@pytest.fixture
async def channel(edge: Edge) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as ch:
        yield ch


@pytest.fixture
async def registered(
    registry: Registry, settings: MeshSettings, edge: Edge, admin: httpx.AsyncClient
) -> AsyncIterator[ServiceInstance]:
    """A live system backend, registered and healthy in Envoy; deregistered afterwards."""
    async with system_backend(settings.run_dir) as instance:
        address = endpoint(instance)
        await registry.put(instance)

        async def healthy() -> bool:
            flags = await edge.host_health(admin, SYSTEM_SERVICE)
            return flags.get(address) == "healthy"

        await wait_for(healthy, timeout=15, message=f"{address} healthy in envoy")
        try:
            yield instance
        finally:
            await registry.remove(instance)

            async def gone() -> bool:
                return address not in await edge.host_health(admin, SYSTEM_SERVICE)

            await wait_for(gone, timeout=15, message=f"{address} gone from envoy")


async def test_grpc_call_through_envoy_reaches_the_instance(
    registered: ServiceInstance, channel: grpc.aio.Channel
) -> None:
    stub = system_service_pb2_grpc.SystemServiceStub(channel)

    response = await stub.GetStatus(system_service_pb2.GetStatusRequest(), timeout=5)

    assert response.reported_by == f"system/{registered.instance_id}"


async def test_rest_is_transcoded_to_snake_case_json(
    registered: ServiceInstance, edge: Edge, http: httpx.AsyncClient
) -> None:
    response = await http.get(f"http://127.0.0.1:{edge.port}/v1/system/status")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["overall"] == "HEALTHY"
    assert body["reported_by"] == f"system/{registered.instance_id}"
    (component,) = body["components"]
    assert component["last_error"] == "", "primitive fields are printed even when empty"
    assert component["kind"] == "COMPONENT_KIND_INFRASTRUCTURE"


async def test_rest_access_is_logged_as_json(
    registered: ServiceInstance, edge: Edge, http: httpx.AsyncClient
) -> None:
    request_id = uuid.uuid4().hex
    await http.get(
        f"http://127.0.0.1:{edge.port}/v1/system/status", headers={"x-request-id": request_id}
    )

    def logged() -> dict[str, object] | None:
        for line in read_log(edge.access_log).splitlines():
            if request_id in line:
                entry: dict[str, object] = json.loads(line)
                return entry
        return None

    await wait_for(lambda: logged() is not None, timeout=10, message="access log line")
    entry = logged()
    assert entry is not None
    assert entry["path"] == "/v1/system/status"
    assert entry["grpc_path"] == f"/{SYSTEM_SERVICE}/GetStatus"
    assert entry["response_code"] == 200
    assert entry["grpc_status"] == 0
    assert entry["upstream_host"] == registered.socket_path, "envoy reaches it on its socket"


async def test_rest_edge_rejects_bad_requests(
    registered: ServiceInstance,
    edge: Edge,
    http: httpx.AsyncClient,
    token_metadata: tuple[tuple[str, str]],
) -> None:
    base = f"http://127.0.0.1:{edge.port}"
    signed_in = dict(token_metadata)

    unknown = await http.get(f"{base}/v1/nope", headers=signed_in)
    bad_query = await http.get(f"{base}/v1/system/status?nope=1")

    assert unknown.status_code == 404
    assert bad_query.status_code == 400
    assert unknown.headers["content-type"] == bad_query.headers["content-type"]
    assert bad_query.json()["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


async def test_unknown_grpc_method_is_unimplemented(
    registered: ServiceInstance,
    channel: grpc.aio.Channel,
    token_metadata: tuple[tuple[str, str]],
) -> None:
    call = channel.unary_unary(f"/{SYSTEM_SERVICE}/Nope")

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call(b"", metadata=token_metadata, timeout=5)

    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_through_envoy_lists_mesh_services(
    control_plane: Gateway, channel: grpc.aio.Channel, token_metadata: tuple[tuple[str, str]]
) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    v1alpha = reflection_pb2_grpc.ServerReflectionStub(channel)
    v1 = channel.stream_stream(
        f"/{REFLECTION_V1_SERVICE}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    for call in (
        v1alpha.ServerReflectionInfo(iter([request]), metadata=token_metadata),
        v1(iter([request]), metadata=token_metadata),
    ):
        responses = [r async for r in call]
        names = {s.name for s in responses[0].list_services_response.service}
        assert {SYSTEM_SERVICE, "grpc.health.v1.Health"} <= names

    symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SYSTEM_SERVICE)
    (described,) = [
        r async for r in v1alpha.ServerReflectionInfo(iter([symbol]), metadata=token_metadata)
    ]
    assert described.file_descriptor_response.file_descriptor_proto


async def test_mesh_health_through_envoy_follows_the_registry(
    registry: Registry, settings: MeshSettings, channel: grpc.aio.Channel
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)

    async def status(service: str) -> int:
        request = health_pb2.HealthCheckRequest(service=service)
        response = await stub.Check(request, timeout=5)
        return int(response.status)

    async def is_serving(service: str, expected: bool) -> bool:
        serving = bool(await status(service) == health_pb2.HealthCheckResponse.SERVING)
        return serving == expected

    assert await is_serving("", True), "the gateway itself"
    assert await is_serving(SYSTEM_SERVICE, False), "nothing registered yet"
    async with system_backend(settings.run_dir) as instance:
        await registry.put(instance)
        await wait_for(lambda: is_serving(SYSTEM_SERVICE, True), timeout=10, message="serving")
        await registry.remove(instance)
        await wait_for(lambda: is_serving(SYSTEM_SERVICE, False), timeout=10, message="stopped")


async def test_removed_instance_leaves_envoy_at_once(
    registered: ServiceInstance,
    registry: Registry,
    edge: Edge,
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    channel: grpc.aio.Channel,
) -> None:
    address = endpoint(registered)

    # Still serving and still passing health checks: only the registry says it is gone.
    await registry.remove(registered)

    async def gone() -> bool:
        return address not in await edge.host_health(admin, SYSTEM_SERVICE)

    await wait_for(gone, timeout=10, message="host removed from envoy")
    response = await http.get(f"http://127.0.0.1:{edge.port}/v1/system/status")
    assert response.status_code == 503
    assert response.json() == {
        "code": grpc.StatusCode.UNAVAILABLE.value[0],
        "message": "no healthy upstream",
        "details": [],
    }
    stub = system_service_pb2_grpc.SystemServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetStatus(system_service_pb2.GetStatusRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error.value.details() == "no healthy upstream", "gRPC local replies stay plain"


async def test_config_envoy_rejects_is_reported_as_nack(control_plane: Gateway, edge: Edge) -> None:
    good = control_plane.cache.snapshot
    assert good is not None
    clusters = []
    for cluster in good.clusters.messages.values():
        bad = Cluster.parse(bytes(cluster))
        # Valid protobuf, refused by Envoy: EDS clusters cannot use a cluster-provided LB.
        bad.lb_policy = ClusterLbPolicy.CLUSTER_PROVIDED
        clusters.append(bad)
    rejected = dataclasses.replace(good, clusters=ResourceSet.of(CLUSTER_TYPE, clusters))

    try:
        assert control_plane.cache.set(rejected)
        await wait_for(
            lambda: control_plane.status.last_nack(CLUSTER_TYPE) is not None,
            timeout=10,
            message="NACK from envoy",
        )
    finally:
        control_plane.cache.set(good)
    nack = control_plane.status.last_nack(CLUSTER_TYPE)
    assert nack is not None
    assert nack.node_id == NODE_ID
    assert nack.rejected_version == rejected.clusters.version
    assert "cluster provided" in nack.message.lower() or "cluster_provided" in nack.message.lower()
    await wait_for(
        lambda: control_plane.status.acked_version(NODE_ID, CLUSTER_TYPE) == good.clusters.version,
        timeout=10,
        message="envoy back on the good clusters",
    )


async def test_changed_cluster_warms_at_once(
    control_plane: Gateway, registered: ServiceInstance, channel: grpc.aio.Channel
) -> None:
    good = control_plane.cache.snapshot
    assert good is not None
    clusters = []
    for cluster in good.clusters.messages.values():
        changed = Cluster.parse(bytes(cluster))
        changed.connect_timeout = timedelta(seconds=2)
        clusters.append(changed)
    updated = dataclasses.replace(good, clusters=ResourceSet.of(CLUSTER_TYPE, clusters))

    try:
        control_plane.cache.set(updated)
        # Envoy ACKs CDS once the re-created cluster has its endpoints again, which it only
        # gets (well before its 15 s fetch timeout) if its EDS re-request is answered.
        await wait_for(
            lambda: (
                control_plane.status.acked_version(NODE_ID, CLUSTER_TYPE)
                == updated.clusters.version
            ),
            timeout=5,
            message="updated clusters warmed and ACKed",
        )
        stub = system_service_pb2_grpc.SystemServiceStub(channel)
        response = await stub.GetStatus(system_service_pb2.GetStatusRequest(), timeout=5)
        assert response.reported_by == f"system/{registered.instance_id}"
    finally:
        control_plane.cache.set(good)
    await wait_for(
        lambda: control_plane.status.acked_version(NODE_ID, CLUSTER_TYPE) == good.clusters.version,
        timeout=5,
        message="original clusters back",
    )
