from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import HeaderValueOptionHeaderAppendAction
from envoy_data_plane.envoy.config.route.v3 import Route, RouteConfiguration
from envoy_data_plane.envoy.extensions.filters.http.cors.v3 import CorsPolicy
from envoy_data_plane.envoy.extensions.filters.http.grpc_json_transcoder.v3 import (
    GrpcJsonTranscoder,
)
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpFilter,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import HttpProtocolOptions
from envoy_data_plane.google.protobuf import Any

from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.names import EDGE_ROUTES, XDS_CLUSTER
from sutazai.gateway.resources import (
    CORS_FILTER,
    HTTP_PROTOCOL_OPTIONS,
    REST_CATCH_ALL,
    RETRY_ON_ANY,
    RETRY_ON_IDEMPOTENT,
    EdgePolicy,
    build_cluster,
    build_listener,
    build_load_assignment,
    build_route_configuration,
)
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.settings import AuthSettings, EdgeSettings, MeshSettings
from tests.gateway.demo_descriptors import DEMO_SERVICE, demo_descriptor_set

CATALOG = ServiceCatalog.from_descriptor_set(demo_descriptor_set())
POLICY = EdgePolicy(edge=EdgeSettings(cors_origins=()))


def instance(
    instance_id: str, port: int, *services: str, host: str = "127.0.0.1"
) -> ServiceInstance:
    return ServiceInstance(
        service="demo", instance_id=instance_id, host=host, port=port, grpc_services=services
    )


def routes_by_name(config: RouteConfiguration) -> dict[str, Route]:
    (vhost,) = config.virtual_hosts
    return {r.name: r for r in vhost.routes}


def http_connection_manager(catalog: ServiceCatalog, **kwargs: object) -> HttpConnectionManager:
    listener = build_listener(catalog, POLICY, host="127.0.0.1", port=10005, **kwargs)  # type: ignore[arg-type]
    (chain,) = listener.filter_chains
    (network_filter,) = chain.filters
    assert network_filter.typed_config is not None
    hcm = network_filter.typed_config.unpack()
    assert isinstance(hcm, HttpConnectionManager)
    return hcm


def test_cluster_is_http2_eds_with_grpc_health_check_and_fast_host_removal() -> None:
    (service,) = CATALOG.services
    cluster = build_cluster(service, POLICY)

    assert cluster.name == DEMO_SERVICE
    assert cluster.type == ClusterDiscoveryType.EDS
    assert cluster.eds_cluster_config is not None
    assert cluster.eds_cluster_config.eds_config is not None
    assert cluster.eds_cluster_config.eds_config.ads is not None
    options = cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].unpack()
    assert isinstance(options, HttpProtocolOptions)
    assert options.explicit_http_config is not None
    assert options.explicit_http_config.http2_protocol_options is not None
    (check,) = cluster.health_checks
    assert check.grpc_health_check is not None
    assert check.grpc_health_check.service_name == DEMO_SERVICE
    assert (check.unhealthy_threshold, check.healthy_threshold) == (2, 1)
    assert check.interval == timedelta(seconds=1)
    assert cluster.outlier_detection is not None
    assert cluster.outlier_detection.consecutive_gateway_failure == 3
    assert cluster.circuit_breakers is not None
    assert cluster.circuit_breakers.thresholds[0].retry_budget is not None
    assert cluster.ignore_health_on_host_removal
    assert cluster.common_lb_config is not None
    assert cluster.common_lb_config.ignore_new_hosts_until_first_hc


def test_load_assignment_lists_routable_instances_of_the_service_only() -> None:
    instances = [
        instance("b", 5002, DEMO_SERVICE),
        instance("a", 5001, DEMO_SERVICE, "sutazai.other.v1.OtherService"),
        instance("c", 5003, "sutazai.other.v1.OtherService"),
        instance("named", 5004, DEMO_SERVICE, host="localhost"),  # EDS needs IP literals
        instance("portless", 0, DEMO_SERVICE),
    ]

    assignment = build_load_assignment(DEMO_SERVICE, instances)

    assert assignment.cluster_name == DEMO_SERVICE
    (locality,) = assignment.endpoints
    addresses = [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for e in locality.lb_endpoints
        if e.endpoint and e.endpoint.address and e.endpoint.address.socket_address
    ]
    assert addresses == [("127.0.0.1", 5001), ("127.0.0.1", 5002)]


def test_an_instance_with_a_socket_is_reached_through_it() -> None:
    on_socket = instance("s", 5003, DEMO_SERVICE)
    on_socket.socket_path = "/state/run/demo.s.sock"
    on_socket.host = "not-an-ip"  # irrelevant: Envoy never dials host:port for it

    (locality,) = build_load_assignment(DEMO_SERVICE, [on_socket]).endpoints
    (endpoint,) = locality.lb_endpoints

    assert endpoint.endpoint is not None
    assert endpoint.endpoint.address is not None
    assert endpoint.endpoint.address.pipe is not None
    assert endpoint.endpoint.address.pipe.path == "/state/run/demo.s.sock"
    assert endpoint.endpoint.address.socket_address is None


def test_envoy_sets_the_client_address_over_any_client_value() -> None:
    (virtual_host,) = build_route_configuration(CATALOG, POLICY).virtual_hosts
    (added,) = virtual_host.request_headers_to_add

    assert added.header is not None
    assert (added.header.key, added.header.value) == (
        "x-sutazai-client-address",
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    )
    assert added.append_action == HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD


def test_load_assignment_without_instances_is_empty_not_missing() -> None:
    assignment = build_load_assignment(DEMO_SERVICE, [])

    assert assignment.cluster_name == DEMO_SERVICE
    assert all(not locality.lb_endpoints for locality in assignment.endpoints)


def test_listener_filter_order_and_transcoder() -> None:
    hcm = http_connection_manager(CATALOG)

    assert [f.name for f in hcm.http_filters] == [
        "envoy.filters.http.cors",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.grpc_stats",
        "envoy.filters.http.router",
    ]
    assert hcm.rds is not None
    assert hcm.rds.route_config_name == EDGE_ROUTES
    transcoder_any = hcm.http_filters[1].typed_config
    assert transcoder_any is not None
    transcoder = transcoder_any.unpack()
    assert isinstance(transcoder, GrpcJsonTranscoder)
    assert transcoder.services == [DEMO_SERVICE]
    assert transcoder.proto_descriptor_bin == CATALOG.descriptor_set
    assert transcoder.convert_grpc_status
    assert transcoder.print_options is not None
    assert transcoder.print_options.preserve_proto_field_names
    assert not transcoder.print_options.always_print_enums_as_ints
    assert transcoder.request_validation_options is not None
    assert transcoder.request_validation_options.reject_unknown_method
    assert transcoder.request_validation_options.reject_unknown_query_parameters
    assert transcoder.max_request_body_size == POLICY.edge.max_request_bytes
    assert transcoder.max_response_body_size == POLICY.max_response_bytes
    (access_log,) = hcm.access_log
    assert access_log.name == "envoy.access_loggers.stdout"
    assert hcm.local_reply_config is not None
    assert hcm.local_reply_config.mappers


def test_guard_filters_go_between_cors_and_transcoder() -> None:
    guard = HttpFilter(name="envoy.filters.http.local_ratelimit")

    hcm = http_connection_manager(CATALOG, guard_filters=[guard])

    assert [f.name for f in hcm.http_filters][:3] == [
        "envoy.filters.http.cors",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.grpc_json_transcoder",
    ]


def test_routes_follow_method_kinds() -> None:
    routes = routes_by_name(build_route_configuration(CATALOG, POLICY))

    create = routes[f"{DEMO_SERVICE}/Create"].route
    get = routes[f"{DEMO_SERVICE}/Get"].route
    watch = routes[f"{DEMO_SERVICE}/Watch"].route
    assert create
    assert get
    assert watch
    assert create.cluster == get.cluster == watch.cluster == DEMO_SERVICE
    assert create.timeout == POLICY.unary_timeout
    assert create.retry_policy
    assert create.retry_policy.retry_on == RETRY_ON_ANY
    assert create.retry_policy.per_try_timeout is None, "a slow non-idempotent call is not cut"
    assert get.retry_policy
    assert get.retry_policy.retry_on == RETRY_ON_IDEMPOTENT
    assert get.retry_policy.per_try_timeout == POLICY.per_try_timeout
    assert get.retry_policy.retry_host_predicate[0].name == (
        "envoy.retry_host_predicates.previous_hosts"
    )
    assert watch.timeout == timedelta(0), "streams have no overall timeout"
    assert watch.idle_timeout == POLICY.stream_idle_timeout
    assert watch.max_stream_duration is not None
    assert watch.max_stream_duration.grpc_timeout_header_max == timedelta(0)


def test_route_order_methods_then_service_then_gateway_then_rest_catch_all() -> None:
    config = build_route_configuration(CATALOG, POLICY)
    (vhost,) = config.virtual_hosts
    names = [r.name for r in vhost.routes]

    assert names.index(f"{DEMO_SERVICE}/Create") < names.index(DEMO_SERVICE)
    assert names[-1] == REST_CATCH_ALL
    catch_all = vhost.routes[-1]
    assert catch_all.match is not None
    assert catch_all.match.prefix == "/v1/"
    assert catch_all.route is not None, "CORS finds no policy on a direct response"
    assert vhost.request_body_buffer_limit == POLICY.edge.max_request_bytes


def test_health_and_reflection_route_to_the_gateway() -> None:
    routes = routes_by_name(build_route_configuration(CATALOG, POLICY))

    for prefix in (
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ):
        action = routes[prefix].route
        assert action is not None
        assert action.cluster == XDS_CLUSTER
    reflection = routes["grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"].route
    assert reflection is not None
    assert reflection.timeout == timedelta(0), "reflection is a bidirectional stream"


def test_cors_policy_only_with_explicit_origins() -> None:
    plain = build_route_configuration(CATALOG, POLICY)
    with_origins = build_route_configuration(
        CATALOG, EdgePolicy(edge=EdgeSettings(cors_origins=("http://localhost:3000",)))
    )

    assert not plain.virtual_hosts[0].typed_per_filter_config
    policy = with_origins.virtual_hosts[0].typed_per_filter_config[CORS_FILTER].unpack()
    assert isinstance(policy, CorsPolicy)
    assert [m.exact for m in policy.allow_origin_string_match] == ["http://localhost:3000"]
    assert policy.allow_methods == "GET, POST, OPTIONS"
    assert "authorization" in policy.allow_headers


def test_policy_from_settings() -> None:
    settings = MeshSettings(
        edge=EdgeSettings(
            cors_origins=("http://a.example",),
            user_rate_limit_burst=7,
            user_rate_limit_per_second=3,
            address_rate_limit_burst=5,
            address_rate_limit_per_second=2,
            rate_limit_clients=11,
            global_rate_limit_burst=70,
            global_rate_limit_per_second=30,
            max_request_bytes=1234,
        ),
        auth=AuthSettings(issuer="mesh-x"),
    )

    policy = EdgePolicy.from_settings(settings)

    assert policy.edge is settings.edge
    assert policy.auth.issuer == "mesh-x"
    assert policy.connect_timeout == EdgePolicy().connect_timeout, "Envoy's tuning keeps defaults"


def test_packing_uses_type_urls_envoy_accepts() -> None:
    (service,) = CATALOG.services

    assert Any.pack(build_cluster(service, POLICY)).type_url == (
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    )
    assert Any.pack(build_route_configuration(CATALOG, POLICY)).type_url == (
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    )
    assert isinstance(Cluster.parse(bytes(build_cluster(service, POLICY))), Cluster)
