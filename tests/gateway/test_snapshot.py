from __future__ import annotations

import dataclasses

import pytest
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment

from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.snapshot import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ResourceSet,
    SnapshotBuilder,
    SnapshotCache,
)
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from tests.gateway.demo_descriptors import DEMO_SERVICE, demo_descriptor_set
from tests.gateway.tokens import OTHER_JWKS, TEST_JWKS

BUILDER = SnapshotBuilder(
    ServiceCatalog.from_descriptor_set(demo_descriptor_set()),
    EdgePolicy(),
    host="127.0.0.1",
    port=10005,
    jwks=TEST_JWKS,
)


def demo_instance(instance_id: str, port: int) -> ServiceInstance:
    return ServiceInstance(
        service="demo",
        instance_id=instance_id,
        host="127.0.0.1",
        port=port,
        grpc_services=[DEMO_SERVICE],
    )


def test_snapshot_holds_every_type_and_is_consistent() -> None:
    snapshot = BUILDER.build([demo_instance("a", 5001)])

    assert [a.type_url for a in snapshot.resources(CLUSTER_TYPE)] == [CLUSTER_TYPE]
    assert [a.type_url for a in snapshot.resources(ENDPOINT_TYPE)] == [ENDPOINT_TYPE]
    assert [a.type_url for a in snapshot.resources(LISTENER_TYPE)] == [LISTENER_TYPE]
    assert [a.type_url for a in snapshot.resources(ROUTE_TYPE)] == [ROUTE_TYPE]
    assert [a.type_url for a in snapshot.resources(EXTENSION_CONFIG_TYPE)] == [
        EXTENSION_CONFIG_TYPE
    ]
    assert snapshot.missing_references() == []


def test_resources_can_be_selected_by_name() -> None:
    snapshot = BUILDER.build([])

    assert len(snapshot.resources(ENDPOINT_TYPE, {DEMO_SERVICE, "nope"})) == 1
    assert snapshot.resources(ENDPOINT_TYPE, set()) == []


def test_versions_change_only_with_content() -> None:
    first = BUILDER.build([demo_instance("a", 5001)])
    same = BUILDER.build([demo_instance("a", 5001)])
    moved = BUILDER.build([demo_instance("a", 5002)])

    assert same.version == first.version
    assert moved.version != first.version
    assert moved.endpoints.version != first.endpoints.version
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, EXTENSION_CONFIG_TYPE):
        assert moved.resource_set(type_url).version == first.resource_set(type_url).version


def test_new_keys_change_only_the_filter_configuration() -> None:
    builder = SnapshotBuilder(
        ServiceCatalog.from_descriptor_set(demo_descriptor_set()),
        EdgePolicy(),
        host="127.0.0.1",
        port=10005,
        jwks=TEST_JWKS,
    )
    before = builder.build([demo_instance("a", 5001)])

    builder.set_jwks(OTHER_JWKS)
    after = builder.rekeyed(before)

    assert after.extension_configs.version != before.extension_configs.version
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        assert after.resource_set(type_url) is before.resource_set(type_url)
    assert builder.build([demo_instance("a", 5001)]).version == after.version


def test_instance_order_does_not_change_the_version() -> None:
    a, b = demo_instance("a", 5001), demo_instance("b", 5002)

    assert BUILDER.build([a, b]).version == BUILDER.build([b, a]).version


def test_missing_endpoints_are_reported() -> None:
    full = BUILDER.build([])
    broken = dataclasses.replace(full, endpoints=ResourceSet.of(ENDPOINT_TYPE, []))

    assert broken.missing_references() == [
        f"cluster {DEMO_SERVICE!r} needs endpoints {DEMO_SERVICE!r}"
    ]


def test_missing_routes_and_clusters_are_reported() -> None:
    full = BUILDER.build([])
    broken = dataclasses.replace(
        full,
        clusters=ResourceSet.of(CLUSTER_TYPE, []),
        routes=ResourceSet.of(ROUTE_TYPE, []),
        extension_configs=ResourceSet.of(EXTENSION_CONFIG_TYPE, []),
    )

    assert broken.missing_references() == [
        "listener 'edge' needs routes 'edge_routes'",
        "listener 'edge' needs filter configuration 'edge_jwt_authn'",
    ]
    no_clusters = dataclasses.replace(full, clusters=ResourceSet.of(CLUSTER_TYPE, []))
    problems = no_clusters.missing_references()
    assert problems
    assert all(DEMO_SERVICE in p for p in problems), "routes to `xds` are fine (bootstrap)"


def test_resource_sets_refuse_duplicates_and_foreign_types() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ResourceSet.of(CLUSTER_TYPE, [Cluster(name="a"), Cluster(name="a")])
    with pytest.raises(ValueError, match="expected"):
        ResourceSet.of(CLUSTER_TYPE, [ClusterLoadAssignment(cluster_name="a")])


def test_cache_notifies_on_change_only() -> None:
    cache = SnapshotCache()
    seen: list[str] = []
    first = BUILDER.build([])

    with cache.watching(lambda s: seen.append(s.version)) as current:
        assert current is None
        assert cache.set(first)
        assert not cache.set(BUILDER.build([]))
        assert cache.set(BUILDER.build([demo_instance("a", 5001)]))
    assert cache.set(first)

    assert len(seen) == 2
    assert cache.snapshot is first


def test_cache_refuses_an_inconsistent_snapshot() -> None:
    cache = SnapshotCache()
    full = BUILDER.build([])
    broken = dataclasses.replace(full, endpoints=ResourceSet.of(ENDPOINT_TYPE, []))

    with pytest.raises(ValueError, match="inconsistent"):
        cache.set(broken)
    assert cache.snapshot is None
