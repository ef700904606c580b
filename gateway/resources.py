"""Envoy xDS resources for the mesh edge, built as pure functions of the mesh model.

Nothing here does I/O: the inputs are the :class:`~sutazai.gateway.catalog.ServiceCatalog`
(what the descriptor set declares), the live registry instances and an :class:`EdgePolicy`;
the outputs are envoy-data-plane (betterproto2) messages ready to be packed into a snapshot.

Shape of the edge (FIELD_GUIDE sections 1 and 2):

* one EDS cluster per mesh gRPC service, HTTP/2 upstream, gRPC health check on that service
  name, outlier detection, circuit breakers with a retry budget;
* one listener ``edge`` whose HTTP connection manager (codec AUTO: HTTP/1.1 REST and HTTP/2
  gRPC on one port) runs ``cors → [guard filters] → grpc_json_transcoder → router`` (the guards,
  JWT and rate limit, are built in :mod:`~sutazai.gateway.guards`) and answers REST callers'
  local replies in JSON (:mod:`~sutazai.gateway.local_replies`);
* one route configuration ``edge_routes`` matching gRPC paths (the transcoder rewrites REST paths
  before the router), gateway-served health and reflection, and a ``/v1/`` catch-all so filters
  that run before the transcoder (CORS, JWT) see a route;
* for each HTTP service (``http_prefixes`` in ``deploy/mesh.toml``, e.g. the OpenAI-compatible
  API under ``/openai/``): an EDS cluster speaking HTTP/1.1 to its instances' HTTP sockets with an
  HTTP health check, and a route per prefix with the transcoder off and no whole-request
  timeout (server-sent events stream), behind the same CORS, JWT and rate-limit filters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    CircuitBreakersThresholdsRetryBudget,
    Cluster,
    ClusterCommonLbConfig,
    ClusterDiscoveryType,
    ClusterEdsClusterConfig,
    OutlierDetection,
)
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    AggregatedConfigSource,
    ApiVersion,
    ConfigSource,
    DataSource,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
    HealthCheck,
    HealthCheckGrpcHealthCheck,
    HealthCheckHttpHealthCheck,
    Http1ProtocolOptions,
    Http2ProtocolOptions,
    Pipe,
    RoutingPriority,
    SocketAddress,
    SubstitutionFormatString,
    TransportSocket,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    FilterConfig,
    RetryPolicy,
    RetryPolicyRetryBackOff,
    RetryPolicyRetryHostPredicate,
    Route,
    RouteAction,
    RouteActionMaxStreamDuration,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.access_loggers.stream.v3 import StdoutAccessLog
from envoy_data_plane.envoy.extensions.filters.http.cors.v3 import Cors, CorsPolicy
from envoy_data_plane.envoy.extensions.filters.http.grpc_json_transcoder.v3 import (
    GrpcJsonTranscoder,
    GrpcJsonTranscoderPrintOptions,
    GrpcJsonTranscoderRequestValidationOptions,
)
from envoy_data_plane.envoy.extensions.filters.http.grpc_stats.v3 import (
    FilterConfig as GrpcStatsConfig,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpFilter,
    Rds,
)
from envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3 import PreviousHostsPredicate
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CommonTlsContext,
    DownstreamTlsContext,
    TlsCertificate,
    TlsParameters,
    TlsParametersTlsProtocol,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.envoy.type.v3 import Percent
from envoy_data_plane.google.protobuf import Any, Struct

from sutazai.gateway.catalog import GrpcMethod, GrpcService, ServiceCatalog, gateway_services
from sutazai.gateway.local_replies import local_reply_config
from sutazai.gateway.names import EDGE_LISTENER, EDGE_ROUTES, EDGE_STAT_PREFIX, XDS_CLUSTER
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.context import CLIENT_ADDRESS_HEADER
from sutazai.runtime.envoy import http_cluster
from sutazai.runtime.registry import instance_label
from sutazai.runtime.settings import AuthSettings, EdgeSettings, MeshSettings

HTTP_PROTOCOL_OPTIONS: Final = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
CORS_FILTER: Final = "envoy.filters.http.cors"
TRANSCODER_FILTER: Final = "envoy.filters.http.grpc_json_transcoder"
ROUTER_FILTER: Final = "envoy.filters.http.router"
GRPC_STATS_FILTER: Final = "envoy.filters.http.grpc_stats"
TLS_TRANSPORT_SOCKET: Final = "envoy.transport_sockets.tls"

# Retry triggers (FIELD_GUIDE §2.2). Connect failures and refused streams never reached a
# handler, and UNAVAILABLE is gRPC's "try again" (a draining server answers it before running
# the handler): safe for every call. A reset may come after the handler ran, so it is retried
# only for methods declared idempotent.
RETRY_ON_ANY: Final = "connect-failure,refused-stream,unavailable"
RETRY_ON_IDEMPOTENT: Final = "connect-failure,refused-stream,unavailable,reset"
# An HTTP service's request is retried only when it cannot have reached the application.
RETRY_ON_HTTP: Final = "connect-failure,refused-stream,reset-before-request"

HTTP_HEALTH_PATH: Final = "/healthz"
"""Where Envoy checks an HTTP service instance (on its socket; no edge route reaches it)."""

ACCESS_LOG_FORMAT: Final[dict[str, str]] = {
    "event": "envoy.access",
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    # The transcoder keeps the REST path in x-envoy-original-path; :path is then the gRPC path.
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "grpc_path": "%REQ(:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS(NUMBER)%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "duration_ms": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    # The caller as proven by its token (jwt_authn's payload_in_metadata); empty if anonymous.
    "user": "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload:name)%",
}

_UNDECLARED_METHOD: Final = GrpcMethod(
    "", client_streaming=False, server_streaming=False, idempotent=False
)
"""How a method the descriptor does not declare is routed: unary, not safe to repeat."""

REST_CATCH_ALL: Final = "rest-catch-all"
"""Name of the ``/v1/`` route that gives filters running before the transcoder a route."""


@dataclass(frozen=True, slots=True)
class EdgePolicy:
    """Tunables of the edge.

    What an operator configures (CORS, body size, rate limits, TLS, the token issuer) is the
    settings themselves (:attr:`edge`, :attr:`auth`), so their defaults and validation live in
    one place (:mod:`sutazai.runtime.settings`). The rest are Envoy's tuning, which no setting
    exposes; their defaults follow FIELD_GUIDE §9.
    """

    edge: EdgeSettings = field(default_factory=EdgeSettings)
    """CORS origins, request body limit, the edge's rate limits and its TLS files."""
    auth: AuthSettings = field(default_factory=AuthSettings)
    """The token issuer (``auth.issuer``: the ``iss`` claim a token must carry)."""
    connect_timeout: timedelta = timedelta(seconds=1)
    """TCP connect timeout to an upstream instance."""
    unary_timeout: timedelta = timedelta(seconds=15)
    """Whole-call timeout of unary routes; also caps a client's ``grpc-timeout``."""
    per_try_timeout: timedelta = timedelta(seconds=5)
    """Timeout of one attempt of an idempotent unary call (others get the whole budget)."""
    stream_idle_timeout: timedelta = timedelta(minutes=5)
    """Streams have no overall timeout, only this limit on silence."""
    num_retries: int = 3
    """Retries after the first attempt (bounded further by the cluster's retry budget)."""
    retry_base_interval: timedelta = timedelta(milliseconds=25)
    """First retry back-off; grows exponentially up to :attr:`retry_max_interval`."""
    retry_max_interval: timedelta = timedelta(milliseconds=250)
    """Largest retry back-off."""
    health_check_interval: timedelta = timedelta(seconds=1)
    """Active gRPC health check cadence per upstream host."""
    max_response_bytes: int = 4 * 1024 * 1024
    """Largest REST response body the transcoder buffers."""
    max_connections: int = 1024
    """Per-cluster circuit breaker: connections, pending and active requests."""
    retry_budget_percent: float = 25.0
    """Concurrent retries may be at most this share of the cluster's active requests..."""
    retry_budget_floor: int = 128
    """...but are never refused below this many. A dead instance makes every call in flight
    to it retry at once; a tighter floor (Envoy's default is 3) fails those calls with ``UO``
    instead of retrying them, which a steady stream of calls through Envoy showed."""

    @classmethod
    def from_settings(cls, settings: MeshSettings) -> EdgePolicy:
        """The policy of ``settings.edge`` and ``settings.auth``; Envoy's tuning at its defaults."""
        return cls(edge=settings.edge, auth=settings.auth)


@dataclass(frozen=True, slots=True)
class HttpService:
    """A mesh service that serves plain HTTP under path prefixes (``http_prefixes``)."""

    name: str
    """The service's name in ``deploy/mesh.toml`` (its instances register under it)."""
    prefixes: tuple[str, ...]
    """Path prefixes routed to it, e.g. ``("/openai/",)``."""

    @property
    def cluster(self) -> str:
        """Its Envoy cluster's name."""
        return http_cluster(self.name)


def http_services(owners: dict[str, tuple[str, ...]]) -> tuple[HttpService, ...]:
    """The HTTP services of ``owners`` (name → prefixes, as ``http_owners`` returns), by name."""
    return tuple(HttpService(name, prefixes) for name, prefixes in sorted(owners.items()))


def build_cluster(service: GrpcService, policy: EdgePolicy) -> Cluster:
    """The EDS cluster of one mesh gRPC service (named after the service)."""
    http2 = HttpProtocolOptions(
        explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=Http2ProtocolOptions()
        )
    )
    return Cluster(
        name=service.name,
        type=ClusterDiscoveryType.EDS,
        eds_cluster_config=ClusterEdsClusterConfig(eds_config=_ads_source()),
        connect_timeout=policy.connect_timeout,
        typed_extension_protocol_options={HTTP_PROTOCOL_OPTIONS: Any.pack(http2)},
        # No TCP keepalive: endpoints are Unix sockets (a peer that dies closes them, and TCP
        # socket options cannot be set on them); an instance without a socket is dropped by
        # the active health checks and outlier detection within seconds.
        health_checks=[
            HealthCheck(
                timeout=timedelta(seconds=1),
                interval=policy.health_check_interval,
                # Without traffic Envoy would check only every 60 s; a dead idle instance
                # must still turn unhealthy quickly.
                no_traffic_interval=policy.health_check_interval * 2,
                unhealthy_threshold=2,
                healthy_threshold=1,
                grpc_health_check=HealthCheckGrpcHealthCheck(service_name=service.name),
            )
        ],
        outlier_detection=OutlierDetection(
            consecutive_gateway_failure=3,
            enforcing_consecutive_gateway_failure=100,
            consecutive_5xx=5,
            interval=timedelta(seconds=5),
            base_ejection_time=timedelta(seconds=30),
            max_ejection_percent=50,
        ),
        circuit_breakers=_circuit_breakers(policy),
        common_lb_config=ClusterCommonLbConfig(
            # A freshly registered instance takes traffic only once its first check passed,
            # and does not count towards panic mode before that.
            ignore_new_hosts_until_first_hc=True,
        ),
        # An instance removed from the registry leaves at once, even while it still passes
        # health checks (graceful shutdown deregisters before it stops serving).
        ignore_health_on_host_removal=True,
    )


def build_http_cluster(service: HttpService, policy: EdgePolicy) -> Cluster:
    """The EDS cluster of one HTTP service: HTTP/1.1 to its sockets, HTTP health checks."""
    http1 = HttpProtocolOptions(
        explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
            http_protocol_options=Http1ProtocolOptions()
        )
    )
    return Cluster(
        name=service.cluster,
        type=ClusterDiscoveryType.EDS,
        eds_cluster_config=ClusterEdsClusterConfig(eds_config=_ads_source()),
        connect_timeout=policy.connect_timeout,
        typed_extension_protocol_options={HTTP_PROTOCOL_OPTIONS: Any.pack(http1)},
        health_checks=[
            HealthCheck(
                timeout=timedelta(seconds=1),
                interval=policy.health_check_interval,
                no_traffic_interval=policy.health_check_interval * 2,
                unhealthy_threshold=2,
                healthy_threshold=1,
                http_health_check=HealthCheckHttpHealthCheck(path=HTTP_HEALTH_PATH),
            )
        ],
        # Only failures to reach the instance count (connect failures, resets, timeouts): a
        # 503 it answers because a backend behind it is down is an answer, and ejecting the
        # instance for it would turn one sick backend into a dead API.
        outlier_detection=OutlierDetection(
            split_external_local_origin_errors=True,
            consecutive_local_origin_failure=3,
            enforcing_consecutive_local_origin_failure=100,
            enforcing_consecutive_5xx=0,
            enforcing_consecutive_gateway_failure=0,
            enforcing_success_rate=0,
            enforcing_local_origin_success_rate=0,
            interval=timedelta(seconds=5),
            base_ejection_time=timedelta(seconds=30),
            max_ejection_percent=50,
        ),
        circuit_breakers=_circuit_breakers(policy),
        common_lb_config=ClusterCommonLbConfig(ignore_new_hosts_until_first_hc=True),
        ignore_health_on_host_removal=True,
    )


def _circuit_breakers(policy: EdgePolicy) -> CircuitBreakers:
    return CircuitBreakers(
        thresholds=[
            CircuitBreakersThresholds(
                priority=RoutingPriority.DEFAULT,
                max_connections=policy.max_connections,
                max_pending_requests=policy.max_connections,
                max_requests=policy.max_connections,
                retry_budget=CircuitBreakersThresholdsRetryBudget(
                    budget_percent=Percent(value=policy.retry_budget_percent),
                    min_retry_concurrency=policy.retry_budget_floor,
                ),
            )
        ]
    )


def is_routable(instance: ServiceInstance) -> bool:
    """Whether Envoy can take the instance as an EDS endpoint.

    An instance with a Unix socket (checked by the registry trust) is reached through it;
    otherwise it needs an IP literal and a real port.
    """
    if instance.socket_path:
        return True
    try:
        ipaddress.ip_address(instance.host)
    except ValueError:
        return False
    return 0 < instance.port < 65536


def endpoint_address(instance: ServiceInstance) -> Address:
    """Where Envoy connects to an instance: its Unix socket, else ``host:port``."""
    if instance.socket_path:
        return Address(pipe=Pipe(path=instance.socket_path))
    return _socket_address(instance.host, instance.port)


def build_load_assignment(
    service: str, instances: Iterable[ServiceInstance]
) -> ClusterLoadAssignment:
    """Endpoints of one service's cluster: every routable instance that serves it."""
    serving = [i for i in instances if service in i.grpc_services and is_routable(i)]
    return _load_assignment(service, serving)


def build_http_load_assignment(
    service: HttpService, instances: Iterable[ServiceInstance]
) -> ClusterLoadAssignment:
    """Endpoints of an HTTP service's cluster: the HTTP sockets of the instances under its name.

    Which entries may claim that name, and which socket, is the registry trust's business
    (:class:`~sutazai.gateway.registry_trust.RegistryTrust`).
    """
    serving = [i for i in instances if i.service == service.name and i.http_socket_path]
    return _load_assignment(service.cluster, serving, address=http_endpoint_address)


def http_endpoint_address(instance: ServiceInstance) -> Address:
    """Where Envoy sends an instance its service's HTTP prefixes: its HTTP socket."""
    return Address(pipe=Pipe(path=instance.http_socket_path))


def _load_assignment(
    cluster: str,
    instances: Iterable[ServiceInstance],
    *,
    address: Callable[[ServiceInstance], Address] = endpoint_address,
) -> ClusterLoadAssignment:
    serving = sorted(instances, key=lambda i: (i.host, i.port, i.instance_id))
    return ClusterLoadAssignment(
        cluster_name=cluster,
        endpoints=[
            LocalityLbEndpoints(
                lb_endpoints=[
                    LbEndpoint(
                        endpoint=Endpoint(
                            address=address(i),
                            hostname=instance_label(i.service, i.instance_id),
                        )
                    )
                    for i in serving
                ]
            )
        ],
    )


def build_listener(
    catalog: ServiceCatalog,
    policy: EdgePolicy,
    *,
    host: str,
    port: int,
    guard_filters: Sequence[HttpFilter] = (),
    http: Sequence[HttpService] = (),
) -> Listener:
    """The edge listener on ``host:port``.

    ``guard_filters`` are inserted between CORS and the transcoder: the seam for ``jwt_authn``
    and ``local_ratelimit``, which must see the REST path and reject before any transcoding.
    Envoy's own replies under the prefixes of the ``http`` services take their error shape.
    """
    hcm = HttpConnectionManager(
        stat_prefix=EDGE_STAT_PREFIX,
        codec_type=HttpConnectionManagerCodecType.AUTO,
        rds=Rds(config_source=_ads_source(), route_config_name=EDGE_ROUTES),
        http_filters=[
            HttpFilter(name=CORS_FILTER, typed_config=Any.pack(Cors())),
            *guard_filters,
            HttpFilter(name=TRANSCODER_FILTER, typed_config=Any.pack(_transcoder(catalog, policy))),
            # The router counts HTTP statuses only, and a gRPC call's status travels in the
            # trailers of an HTTP 200, so per-status counts of every routed call come from
            # here: ``cluster.<service>.grpc.<code>``. After the transcoder, so REST calls are
            # counted as the gRPC calls they became; per-method names are off, so a caller
            # cannot grow the stats with made-up method names.
            HttpFilter(
                name=GRPC_STATS_FILTER,
                typed_config=Any.pack(GrpcStatsConfig(stats_for_all_methods=False)),
            ),
            HttpFilter(name=ROUTER_FILTER, typed_config=Any.pack(Router())),
        ],
        local_reply_config=local_reply_config([p for h in http for p in h.prefixes]),
        access_log=[
            AccessLog(
                name="envoy.access_loggers.stdout",
                typed_config=Any.pack(
                    StdoutAccessLog(
                        log_format=SubstitutionFormatString(
                            json_format=Struct.from_dict(ACCESS_LOG_FORMAT)
                        )
                    )
                ),
            )
        ],
        # Envoy's edge recommendations: the peer address is the real client (no proxy in
        # front, so no x-forwarded-for hop is trusted), slow-header clients are cut, quiet
        # streams end.
        use_remote_address=True,
        xff_num_trusted_hops=0,
        request_headers_timeout=timedelta(seconds=10),
        stream_idle_timeout=policy.stream_idle_timeout,
        normalize_path=True,
        merge_slashes=True,
        generate_request_id=True,
        preserve_external_request_id=True,
        always_set_request_id_in_response=True,
    )
    return Listener(
        name=EDGE_LISTENER,
        address=_socket_address(host, port),
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=Any.pack(hcm),
                    )
                ],
                # The only chain: with TLS configured there is no plaintext fallback.
                transport_socket=_tls_socket(policy),
            )
        ],
        # Fail loudly when the port is taken instead of silently sharing it with another
        # process (FIELD_GUIDE §2.7 met the same trap with grpcio).
        enable_reuse_port=False,
    )


def build_route_configuration(
    catalog: ServiceCatalog, policy: EdgePolicy, http: Sequence[HttpService] = ()
) -> RouteConfiguration:
    """Routes of the edge: mesh services, gateway services, HTTP services, then ``/v1/``."""
    routes: list[Route] = []
    for service in catalog.services:
        routes += _service_routes(service, service.name, policy)
    for service in gateway_services():
        routes += _service_routes(service, XDS_CLUSTER, policy)
    for http_service in http:
        routes += _http_routes(http_service, policy)
    # REST paths match no gRPC route until the transcoder rewrites them, but CORS looks up its
    # policy before that. The route must forward: a direct response has no route entry, and
    # CORS found no policy there (a preflight to /v1/auth/login got no CORS headers). Its
    # upstream sees only gRPC-framed calls to /v1/ paths (the gateway answers UNIMPLEMENTED):
    # the transcoder answers 404 to every other request it cannot map.
    routes.append(
        Route(
            name=REST_CATCH_ALL,
            match=RouteMatch(prefix="/v1/"),
            route=_route_action(XDS_CLUSTER, _UNDECLARED_METHOD, policy),
        )
    )
    virtual_host = VirtualHost(
        name="edge",
        domains=["*"],
        routes=routes,
        # Services learn the caller's address from this header, set from the connection Envoy
        # accepted and overwriting whatever a caller sent; a caller's x-forwarded-for is
        # dropped so nothing downstream can mistake it for the client.
        request_headers_to_add=[
            HeaderValueOption(
                header=HeaderValue(
                    key=CLIENT_ADDRESS_HEADER, value="%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
                ),
                append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        ],
        request_headers_to_remove=["x-forwarded-for"],
        # What a buffering filter (the transcoder, the router for retries) may hold of one
        # request body; past it a buffering filter answers 413 instead of growing.
        request_body_buffer_limit=policy.edge.max_request_bytes,
    )
    if policy.edge.cors_origins:
        virtual_host.typed_per_filter_config = {CORS_FILTER: Any.pack(_cors_policy(policy))}
    return RouteConfiguration(
        name=EDGE_ROUTES,
        virtual_hosts=[virtual_host],
        # Routes may name the bootstrap's static `xds` cluster and clusters still warming.
        validate_clusters=False,
    )


def _service_routes(service: GrpcService, cluster: str, policy: EdgePolicy) -> list[Route]:
    """One route per method (its own timeout and retry rules), then the service prefix.

    The prefix route sends unknown methods to the service so callers get its UNIMPLEMENTED.
    """
    routes = [
        Route(
            name=f"{service.name}/{method.name}",
            match=RouteMatch(path=service.method_path(method)),
            route=_route_action(cluster, method, policy),
        )
        for method in service.methods
    ]
    routes.append(
        Route(
            name=service.name,
            match=RouteMatch(prefix=service.path_prefix),
            route=_route_action(cluster, _UNDECLARED_METHOD, policy),
        )
    )
    return routes


def _http_routes(service: HttpService, policy: EdgePolicy) -> list[Route]:
    """One route per prefix of an HTTP service.

    No transcoding (these are not gRPC calls: the transcoder would answer 404 to paths it does
    not map) and no gRPC statistics; no whole-request timeout, since a reply may be a stream
    of server-sent events, only the idle limit. The guards (CORS, JWT, rate limits) run as on
    every route.
    """
    disabled = Any.pack(FilterConfig(disabled=True))
    retry = RetryPolicy(
        retry_on=RETRY_ON_HTTP,
        num_retries=policy.num_retries,
        retry_back_off=RetryPolicyRetryBackOff(
            base_interval=policy.retry_base_interval, max_interval=policy.retry_max_interval
        ),
        retry_host_predicate=[
            RetryPolicyRetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=Any.pack(PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=3,
    )
    return [
        Route(
            name=f"{service.cluster}{prefix}",
            match=RouteMatch(prefix=prefix),
            route=RouteAction(
                cluster=service.cluster,
                timeout=timedelta(0),
                idle_timeout=policy.stream_idle_timeout,
                retry_policy=retry,
            ),
            typed_per_filter_config={TRANSCODER_FILTER: disabled, GRPC_STATS_FILTER: disabled},
        )
        for prefix in service.prefixes
    ]


def _route_action(cluster: str, method: GrpcMethod, policy: EdgePolicy) -> RouteAction:
    retry = RetryPolicy(
        retry_on=RETRY_ON_IDEMPOTENT if method.idempotent else RETRY_ON_ANY,
        num_retries=policy.num_retries,
        retry_back_off=RetryPolicyRetryBackOff(
            base_interval=policy.retry_base_interval, max_interval=policy.retry_max_interval
        ),
        retry_host_predicate=[
            RetryPolicyRetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=Any.pack(PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=3,
    )
    if method.streaming:
        # A stream may legitimately last for hours: no overall timeout (the default 15 s
        # would cut it), only an idle limit; a client's grpc-timeout is honoured uncapped.
        return RouteAction(
            cluster=cluster,
            timeout=timedelta(0),
            idle_timeout=policy.stream_idle_timeout,
            max_stream_duration=RouteActionMaxStreamDuration(grpc_timeout_header_max=timedelta(0)),
            retry_policy=retry,
        )
    if method.idempotent:
        # A hung attempt on a sick instance is abandoned and retried elsewhere; only safe when
        # repeating the call is harmless.
        retry.per_try_timeout = policy.per_try_timeout
    return RouteAction(
        cluster=cluster,
        timeout=policy.unary_timeout,
        max_stream_duration=RouteActionMaxStreamDuration(
            grpc_timeout_header_max=policy.unary_timeout
        ),
        retry_policy=retry,
    )


def _transcoder(catalog: ServiceCatalog, policy: EdgePolicy) -> GrpcJsonTranscoder:
    return GrpcJsonTranscoder(
        proto_descriptor_bin=catalog.descriptor_set,
        services=list(catalog.service_names),
        print_options=GrpcJsonTranscoderPrintOptions(
            preserve_proto_field_names=True,
            # REST clients get a stable shape: zero values are printed, enums as names.
            always_print_primitive_fields=True,
            stream_newline_delimited=True,
        ),
        convert_grpc_status=True,
        request_validation_options=GrpcJsonTranscoderRequestValidationOptions(
            reject_unknown_method=True,
            reject_unknown_query_parameters=True,
        ),
        max_request_body_size=policy.edge.max_request_bytes,
        max_response_body_size=policy.max_response_bytes,
    )


def _cors_policy(policy: EdgePolicy) -> CorsPolicy:
    return CorsPolicy(
        allow_origin_string_match=[StringMatcher(exact=o) for o in policy.edge.cors_origins],
        # The REST API only maps GET and POST (DESIGN §3).
        allow_methods="GET, POST, OPTIONS",
        allow_headers="authorization, content-type, x-request-id, grpc-timeout, x-grpc-web",
        expose_headers="grpc-status, grpc-message, x-request-id",
        max_age="600",
    )


def _tls_socket(policy: EdgePolicy) -> TransportSocket | None:
    """Envoy's TLS server socket for the edge, if a certificate is configured.

    Certificate and key are referenced by path (Envoy reads them), never inlined: xDS and
    Envoy's admin output must not carry key material.
    """
    if policy.edge.tls_cert_file is None or policy.edge.tls_key_file is None:
        return None
    context = DownstreamTlsContext(
        common_tls_context=CommonTlsContext(
            tls_certificates=[
                TlsCertificate(
                    certificate_chain=DataSource(filename=str(policy.edge.tls_cert_file)),
                    private_key=DataSource(filename=str(policy.edge.tls_key_file)),
                )
            ],
            tls_params=TlsParameters(tls_minimum_protocol_version=TlsParametersTlsProtocol.TLSv1_2),
            # gRPC needs h2; REST clients may speak either.
            alpn_protocols=["h2", "http/1.1"],
        )
    )
    return TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=Any.pack(context))


def _ads_source() -> ConfigSource:
    return ConfigSource(ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3)


def _socket_address(host: str, port: int) -> Address:
    return Address(socket_address=SocketAddress(address=host, port_value=port))
