"""The SotW ADS protocol, driven directly with the requests Envoy sends."""

from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.rpc import Status
from prometheus_client import CollectorRegistry

from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.names import EDGE_JWT_CONFIG, EDGE_ROUTES
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.session import AdsSession
from sutazai.gateway.snapshot import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SnapshotBuilder,
)
from sutazai.gateway.xds_status import XdsStatus
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.settings import EdgeSettings
from tests.gateway.demo_descriptors import DEMO_SERVICE, demo_descriptor_set
from tests.gateway.tokens import OTHER_JWKS, TEST_JWKS

BUILDER = SnapshotBuilder(
    ServiceCatalog.from_descriptor_set(demo_descriptor_set()),
    EdgePolicy(),
    host="127.0.0.1",
    port=10005,
    jwks=TEST_JWKS,
)
BUILDER_WITH_OTHER_POLICY = SnapshotBuilder(
    ServiceCatalog.from_descriptor_set(demo_descriptor_set()),
    EdgePolicy(connect_timeout=timedelta(seconds=2)),
    host="127.0.0.1",
    port=10005,
    jwks=TEST_JWKS,
)
EMPTY = BUILDER.build([])
ONE = BUILDER.build(
    [
        ServiceInstance(
            service="demo",
            instance_id="a",
            host="127.0.0.1",
            port=5001,
            grpc_services=[DEMO_SERVICE],
        )
    ]
)


def request(
    type_url: str,
    *,
    names: list[str] | None = None,
    ack: DiscoveryResponse | None = None,
    error: str | None = None,
    version: str = "",
) -> DiscoveryRequest:
    return DiscoveryRequest(
        node=Node(id="edge-1"),
        type_url=type_url,
        resource_names=names or [],
        version_info=ack.version_info if ack and error is None else version,
        response_nonce=ack.nonce if ack else "",
        error_detail=Status(code=3, message=error) if error else None,
    )


def new_session() -> tuple[AdsSession, XdsStatus, CollectorRegistry]:
    metrics = CollectorRegistry()
    status = XdsStatus(metrics)
    return AdsSession(status=status), status, metrics


def test_wildcard_cds_gets_every_cluster_then_ack_is_quiet() -> None:
    session, status, _ = new_session()

    (response,) = session.on_request(request(CLUSTER_TYPE), EMPTY)
    assert response.type_url == CLUSTER_TYPE
    assert response.version_info == EMPTY.clusters.version
    assert len(response.resources) == 1
    assert response.nonce

    assert session.on_request(request(CLUSTER_TYPE, ack=response), EMPTY) == []
    assert status.acked_version("edge-1", CLUSTER_TYPE) == EMPTY.clusters.version


def test_eds_answers_the_names_requested() -> None:
    session, _, _ = new_session()

    (response,) = session.on_request(request(ENDPOINT_TYPE, names=[DEMO_SERVICE]), EMPTY)
    assert len(response.resources) == 1
    assert session.on_request(request(ENDPOINT_TYPE, names=[]), EMPTY) == [], "no names: nothing"


def test_changed_names_in_an_ack_are_answered() -> None:
    session, _, _ = new_session()
    (first,) = session.on_request(request(ENDPOINT_TYPE, names=["gone"]), EMPTY)
    assert first.resources == []

    (second,) = session.on_request(request(ENDPOINT_TYPE, names=[DEMO_SERVICE], ack=first), EMPTY)
    assert len(second.resources) == 1


def test_stale_nonce_is_ignored() -> None:
    session, status, _ = new_session()
    (old,) = session.on_request(request(ENDPOINT_TYPE, names=[DEMO_SERVICE]), EMPTY)
    (new,) = session.on_snapshot(ONE)
    assert new.nonce != old.nonce

    assert session.on_request(request(ENDPOINT_TYPE, names=[DEMO_SERVICE], ack=old), ONE) == []
    assert status.acked_version("edge-1", ENDPOINT_TYPE) is None
    assert session.on_request(request(ENDPOINT_TYPE, names=[DEMO_SERVICE], ack=new), ONE) == []
    assert status.acked_version("edge-1", ENDPOINT_TYPE) == ONE.endpoints.version


def test_nack_is_recorded_counted_and_not_answered() -> None:
    session, status, metrics = new_session()
    (response,) = session.on_request(request(CLUSTER_TYPE), EMPTY)

    reply = session.on_request(
        request(CLUSTER_TYPE, ack=response, error="cluster provided LB specified"), EMPTY
    )

    assert reply == [], "resending what was rejected would only be rejected again"
    nack = status.last_nack(CLUSTER_TYPE)
    assert nack is not None
    assert nack.node_id == "edge-1"
    assert nack.rejected_version == EMPTY.clusters.version
    assert "cluster provided LB" in nack.message
    assert status.nacks() == [nack]
    assert (
        metrics.get_sample_value("sutazai_gateway_xds_nacks_total", {"type_url": CLUSTER_TYPE})
        == 1.0
    )
    assert status.acked_version("edge-1", CLUSTER_TYPE) is None


def test_snapshot_change_pushes_only_changed_types_in_order() -> None:
    session, _, _ = new_session()
    for type_url, names in (
        (ROUTE_TYPE, ["edge_routes"]),
        (LISTENER_TYPE, None),
        (ENDPOINT_TYPE, [DEMO_SERVICE]),
        (CLUSTER_TYPE, None),
    ):
        assert session.on_request(request(type_url, names=names), EMPTY)

    pushed = session.on_snapshot(ONE)

    assert [r.type_url for r in pushed] == [ENDPOINT_TYPE], "only endpoints changed"
    assert session.on_snapshot(ONE) == []


def test_requests_before_the_first_snapshot_are_answered_when_it_arrives() -> None:
    session, _, _ = new_session()

    assert session.on_request(request(LISTENER_TYPE), None) == []
    assert session.on_request(request(CLUSTER_TYPE), None) == []
    pushed = session.on_snapshot(EMPTY)

    assert [r.type_url for r in pushed] == [CLUSTER_TYPE, LISTENER_TYPE], "make-before-break"


def test_reconnecting_envoy_gets_a_fresh_answer() -> None:
    session, _, _ = new_session()

    responses = session.on_request(request(CLUSTER_TYPE, version=EMPTY.clusters.version), EMPTY)

    assert len(responses) == 1, "a new stream always answers the first request"


def test_unknown_types_are_not_served() -> None:
    session, _, _ = new_session()

    secret = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    assert session.on_request(request(secret), EMPTY) == []
    assert session.on_snapshot(ONE) == []


def test_endpoints_are_resent_after_clusters_change() -> None:
    session, _, _ = new_session()
    (clusters,) = session.on_request(request(CLUSTER_TYPE), EMPTY)
    (endpoints,) = session.on_request(request(ENDPOINT_TYPE, names=[DEMO_SERVICE]), EMPTY)
    assert session.on_request(request(CLUSTER_TYPE, ack=clusters), EMPTY) == []
    assert (
        session.on_request(request(ENDPOINT_TYPE, names=[DEMO_SERVICE], ack=endpoints), EMPTY) == []
    )
    changed = BUILDER_WITH_OTHER_POLICY.build([])

    (pushed,) = session.on_snapshot(changed)
    assert pushed.type_url == CLUSTER_TYPE
    # Envoy re-creates the cluster and asks again for the endpoints it already has.
    (resent,) = session.on_request(
        request(ENDPOINT_TYPE, names=[DEMO_SERVICE], ack=endpoints), changed
    )

    assert resent.type_url == ENDPOINT_TYPE
    assert resent.version_info == endpoints.version_info
    assert resent.nonce != endpoints.nonce
    assert (
        session.on_request(request(ENDPOINT_TYPE, names=[DEMO_SERVICE], ack=resent), changed) == []
    )


def test_new_keys_push_only_the_filter_configuration() -> None:
    session, _, _ = new_session()
    for type_url, names in (
        (CLUSTER_TYPE, None),
        (ENDPOINT_TYPE, [DEMO_SERVICE]),
        (LISTENER_TYPE, None),
        (ROUTE_TYPE, [EDGE_ROUTES]),
        (EXTENSION_CONFIG_TYPE, [EDGE_JWT_CONFIG]),
    ):
        assert session.on_request(request(type_url, names=names), EMPTY)
    builder = SnapshotBuilder(
        ServiceCatalog.from_descriptor_set(demo_descriptor_set()),
        EdgePolicy(),
        host="127.0.0.1",
        port=10005,
        jwks=TEST_JWKS,
    )
    builder.set_jwks(OTHER_JWKS)

    (pushed,) = session.on_snapshot(builder.rekeyed(EMPTY))

    assert pushed.type_url == EXTENSION_CONFIG_TYPE
    assert len(pushed.resources) == 1


def test_filter_configuration_is_resent_after_the_listener_changes() -> None:
    session, _, _ = new_session()
    (listeners,) = session.on_request(request(LISTENER_TYPE), EMPTY)
    (configs,) = session.on_request(request(EXTENSION_CONFIG_TYPE, names=[EDGE_JWT_CONFIG]), EMPTY)
    assert session.on_request(request(LISTENER_TYPE, ack=listeners), EMPTY) == []
    changed = SnapshotBuilder(
        ServiceCatalog.from_descriptor_set(demo_descriptor_set()),
        EdgePolicy(edge=EdgeSettings(global_rate_limit_burst=1)),
        host="127.0.0.1",
        port=10005,
        jwks=TEST_JWKS,
    ).build([])

    (pushed,) = session.on_snapshot(changed)
    assert pushed.type_url == LISTENER_TYPE
    # A re-created listener may ask again for the filter configuration it already has.
    (resent,) = session.on_request(
        request(EXTENSION_CONFIG_TYPE, names=[EDGE_JWT_CONFIG], ack=configs), changed
    )

    assert resent.version_info == configs.version_info
