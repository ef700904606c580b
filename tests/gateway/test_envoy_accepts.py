"""Envoy itself judges the generated configuration (`envoy --mode validate`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sutazai.gateway.bootstrap import render_bootstrap
from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.snapshot import SnapshotBuilder
from sutazai.ops.cli.certificates import issue_edge_certificate
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.settings import EdgeSettings, EnvoySettings, MeshSettings
from tests.gateway.demo_descriptors import DEMO_SERVICE, demo_descriptor_set
from tests.gateway.envoy_static import envoy_validate, static_bootstrap
from tests.gateway.tokens import TEST_JWKS


@pytest.mark.integration
@pytest.mark.parametrize(
    ("catalog", "service", "policy"),
    [
        pytest.param(
            ServiceCatalog.packaged(),
            "sutazai.system.v1.SystemService",
            EdgePolicy(),
            id="packaged-protos",
        ),
        pytest.param(
            ServiceCatalog.from_descriptor_set(demo_descriptor_set()),
            DEMO_SERVICE,
            EdgePolicy(edge=EdgeSettings(cors_origins=("http://localhost:3000",))),
            id="streaming-post-and-cors",
        ),
    ],
)
def test_envoy_accepts_the_snapshot(
    tmp_path: Path, catalog: ServiceCatalog, service: str, policy: EdgePolicy
) -> None:
    instance = ServiceInstance(
        service="svc", instance_id="a", host="127.0.0.1", port=5001, grpc_services=[service]
    )
    on_socket = ServiceInstance(
        service="svc",
        instance_id="b",
        socket_path=str(tmp_path / "svc.b.sock"),
        grpc_services=[service],
    )
    builder = SnapshotBuilder(catalog, policy, host="127.0.0.1", port=10005, jwks=TEST_JWKS)
    snapshot = builder.build([instance, on_socket])
    config = tmp_path / "static.pb"
    config.write_bytes(static_bootstrap(snapshot))

    result = envoy_validate(config)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_envoy_accepts_a_tls_edge_on_every_address(tmp_path: Path) -> None:
    issued = issue_edge_certificate(tmp_path / "tls", ["edge.example"])
    policy = EdgePolicy(edge=EdgeSettings(tls_cert_file=issued.cert, tls_key_file=issued.key))
    # Validation binds nothing, so the wildcard address is checked without exposing a port.
    builder = SnapshotBuilder(
        ServiceCatalog.packaged(), policy, host="0.0.0.0", port=10005, jwks=TEST_JWKS
    )
    snapshot = builder.build([])
    config = tmp_path / "static.pb"
    config.write_bytes(static_bootstrap(snapshot))

    result = envoy_validate(config)

    assert result.returncode == 0, result.stdout + result.stderr
    key_body = "".join(issued.key.read_text().splitlines()[1:-1]).encode()
    listener = b"".join(a.value for a in snapshot.listeners.packed.values())
    assert str(issued.key).encode() in listener, "the key is referenced by path"
    assert key_body[:40] not in config.read_bytes(), "no key material in xDS"


@pytest.mark.integration
def test_bootstrap_renders_settings_and_envoy_accepts_it(tmp_path: Path) -> None:
    settings = MeshSettings(
        host="0.0.0.0",
        state_dir=tmp_path,
        envoy=EnvoySettings(port=21005, base_id=21005),
    )
    text = render_bootstrap(settings, node_id="edge: #1")
    config = tmp_path / "bootstrap.yaml"
    config.write_text(text, encoding="utf-8")

    result = envoy_validate(config)

    assert result.returncode == 0, result.stdout + result.stderr
    assert '"edge: #1"' in text
    # Admin and ADS are Unix sockets in the run directory whatever the mesh host is.
    assert f'pipe: {{path: "{tmp_path}/run/envoy-admin.sock", mode: 384}}' in text
    assert f'pipe: {{path: "{tmp_path}/run/gateway.sock"}}' in text
    assert "socket_address" not in text, "nothing in the bootstrap is on TCP"
    assert "deprecated" not in (result.stdout + result.stderr).lower()


def test_bootstrap_reaches_the_gateway_over_its_socket_whatever_the_edge_host() -> None:
    for host in ("0.0.0.0", "192.0.2.10", "edge.example"):
        settings = MeshSettings(host=host)
        text = render_bootstrap(settings, node_id="edge")

        assert str(settings.gateway_socket) in text
        assert str(settings.envoy_admin_socket) in text
        assert "socket_address" not in text, "neither admin nor ADS on TCP"


def test_bootstrap_sets_the_downstream_connection_limit() -> None:
    settings = MeshSettings(edge=EdgeSettings(max_downstream_connections=321))

    text = render_bootstrap(settings, node_id="edge")

    assert "max_active_downstream_connections: 321" in text


def test_bootstrap_refuses_a_socket_path_too_long_to_bind() -> None:
    settings = MeshSettings(state_dir=Path("/tmp") / ("d" * 100))  # noqa: S108

    with pytest.raises(ConfigurationError, match="longer than 107 bytes"):
        render_bootstrap(settings, node_id="edge")
