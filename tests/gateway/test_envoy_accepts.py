"""Envoy itself judges the generated configuration (`envoy --mode validate`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sutazai.gateway.bootstrap import render_bootstrap
from sutazai.gateway.catalog import ServiceCatalog
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.snapshot import build_snapshot
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.services.runtime.errors import ConfigurationError
from sutazai.services.runtime.settings import EnvoySettings, MeshSettings
from tests.gateway.demo_descriptors import DEMO_SERVICE, demo_descriptor_set
from tests.gateway.envoy_static import envoy_validate, static_bootstrap
from tests.gateway.tokens import TEST_JWKS


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
            EdgePolicy(cors_origins=("http://localhost:3000",)),
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
    snapshot = build_snapshot(
        catalog, [instance, on_socket], host="127.0.0.1", port=10005, policy=policy, jwks=TEST_JWKS
    )
    config = tmp_path / "static.pb"
    config.write_bytes(static_bootstrap(snapshot))

    result = envoy_validate(config)

    assert result.returncode == 0, result.stdout + result.stderr


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


def test_bootstrap_refuses_a_socket_path_too_long_to_bind() -> None:
    settings = MeshSettings(state_dir=Path("/tmp") / ("d" * 100))  # noqa: S108

    with pytest.raises(ConfigurationError, match="longer than 107 bytes"):
        render_bootstrap(settings, node_id="edge")
