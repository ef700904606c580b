"""HTTP services behind the edge (``http_prefixes``): catalog, trust, clusters, routes, JWT."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy_data_plane.envoy.config.route.v3 import FilterConfig

from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.guards import jwt_rules
from sutazai.gateway.registry_trust import NO_SOCKET, RegistryTrust
from sutazai.gateway.resources import (
    GRPC_STATS_FILTER,
    TRANSCODER_FILTER,
    EdgePolicy,
    HttpService,
    build_http_cluster,
    build_http_load_assignment,
    build_route_configuration,
    http_services,
)
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.deployment import grpc_owners, http_owners, load_catalog
from sutazai.runtime.errors import ConfigurationError

RUN_DIR = Path("/srv/sutazai/run")
OPENAI = HttpService("inference", ("/openai/",))


def write_catalog(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_packaged_catalog_routes_openai_to_the_inference_service() -> None:
    assert http_owners(load_catalog()) == {"inference": ("/openai/",)}
    assert http_services(http_owners(load_catalog())) == (OPENAI,)


@pytest.mark.parametrize(
    "prefixes", ['["/v1/"]', '["openai"]', '["/a/b/"]', '["/Open/"]', '"/openai/"']
)
def test_malformed_or_reserved_prefixes_are_refused(tmp_path: Path, prefixes: str) -> None:
    path = write_catalog(
        tmp_path,
        f'[services.x]\nmodule = "m"\ngrpc_services = []\nhttp_prefixes = {prefixes}\n',
    )
    with pytest.raises(ConfigurationError):
        load_catalog(path)


def test_two_services_cannot_claim_one_prefix(tmp_path: Path) -> None:
    table = 'module = "m"\ngrpc_services = []\nhttp_prefixes = ["/openai/"]\n'
    path = write_catalog(tmp_path, f"[services.a]\n{table}[services.b]\n{table}")
    with pytest.raises(ConfigurationError, match="claimed by both"):
        load_catalog(path)


def test_a_service_may_serve_grpc_and_http(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path,
        '[services.x]\nmodule = "m"\ngrpc_services = ["sutazai.x.v1.X"]\nhttp_prefixes = ["/x/"]\n',
    )
    (entry,) = load_catalog(path)

    assert entry.grpc_services == ("sutazai.x.v1.X",)
    assert entry.http_prefixes == ("/x/",)


def inference_entry(instance_id: str, http_socket: str = "") -> ServiceInstance:
    return ServiceInstance(
        service="inference",
        instance_id=instance_id,
        socket_path=str(RUN_DIR / f"inference.{instance_id}.sock"),
        grpc_services=["sutazai.inference.v1.InferenceService"],
        http_socket_path=http_socket,
    )


def test_the_trust_wants_the_http_prefixes_on_the_instances_own_http_socket() -> None:
    trust = RegistryTrust(
        grpc_owners(load_catalog()), RUN_DIR, http_services=frozenset({"inference"})
    )
    own = inference_entry("a1", str(RUN_DIR / "inference.a1.http.sock"))
    httpless = inference_entry("a2")
    foreign = inference_entry("a3", str(RUN_DIR / "system.a3.http.sock"))
    grpc_socket = inference_entry("a4", str(RUN_DIR / "inference.a4.sock"))

    assert trust.admit("inference.a1", own) is own
    assert trust.admit("inference.a2", httpless) is httpless, "its gRPC service still routes"
    assert trust.admit("inference.a3", foreign) is None
    assert trust.admit("inference.a4", grpc_socket) is None
    assert NO_SOCKET == "no_socket"


def test_endpoints_are_the_http_sockets_of_the_services_own_instances() -> None:
    instances = [
        inference_entry("a1", "/run/inference.a1.http.sock"),
        inference_entry("a2"),
        ServiceInstance(
            service="system",
            instance_id="b1",
            socket_path="/run/system.b1.sock",
            http_socket_path="/run/system.b1.http.sock",
        ),
    ]
    assignment = build_http_load_assignment(OPENAI, instances)

    (locality,) = assignment.endpoints
    paths = [e.endpoint.address.pipe.path for e in locality.lb_endpoints]  # type: ignore[union-attr]
    assert assignment.cluster_name == "http.inference"
    assert paths == ["/run/inference.a1.http.sock"]


def test_the_cluster_speaks_http1_with_an_http_health_check() -> None:
    cluster = build_http_cluster(OPENAI, EdgePolicy())

    (check,) = cluster.health_checks
    assert check.http_health_check is not None
    assert check.http_health_check.path == "/healthz"
    outlier = cluster.outlier_detection
    assert outlier is not None
    assert outlier.split_external_local_origin_errors
    assert outlier.enforcing_consecutive_5xx == 0, "a 503 answer does not eject the instance"


def test_the_route_streams_without_transcoding() -> None:
    routes = build_route_configuration(ServiceCatalog.packaged(), EdgePolicy(), [OPENAI])
    (route,) = [r for r in routes.virtual_hosts[0].routes if r.match.prefix == "/openai/"]

    assert route.route is not None
    assert route.route.cluster == "http.inference"
    assert route.route.timeout is not None
    assert route.route.timeout.total_seconds() == 0
    for name in (TRANSCODER_FILTER, GRPC_STATS_FILTER):
        config = route.typed_per_filter_config[name].unpack()
        assert isinstance(config, FilterConfig)
        assert config.disabled


def test_the_prefix_requires_a_token_before_any_optional_rule() -> None:
    rules = jwt_rules(ServiceCatalog.packaged(), ["/openai/"])

    first = rules[0]
    assert first.match.prefix == "/openai/"
    assert first.requires is not None
    assert first.requires.provider_name == "sutazai"
