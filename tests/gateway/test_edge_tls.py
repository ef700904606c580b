"""The edge over TLS, through a real Envoy on loopback: HTTPS and gRPC work, plaintext does not."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from sutazai.client import MemoryTokenStore, MeshClient
from sutazai.gateway.resources import EdgePolicy
from sutazai.gateway.server import run_gateway
from sutazai.runtime.errors import ConfigurationError
from sutazai.runtime.settings import EdgeSettings, EnvoySettings, MeshSettings
from sutazai.system.v1 import system_service_pb2, system_service_pb2_grpc
from tests.gateway.auth_backend import edge_in_front
from tests.gateway.edge_harness import (
    Edge,
)
from tests.harness.cli import run_cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
async def tls_edge(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Edge, Path]]:
    """Envoy serving TLS with a certificate from ``sutazai certs``; yields it and the CA."""
    workdir = tmp_path_factory.mktemp("tls")
    env = {"SUTAZAI_STATE_DIR": str(workdir)}
    made = await run_cli("certs", "--out", str(workdir / "tls"), env=env)
    assert made.code == 0, made.stderr
    policy = EdgePolicy(
        edge=EdgeSettings(
            tls_cert_file=workdir / "tls" / "edge.pem",
            tls_key_file=workdir / "tls" / "edge-key.pem",
        )
    )
    async with edge_in_front(nats_url, workdir, policy) as (proxy, _):
        yield proxy, workdir / "tls" / "ca.pem"


async def test_https_works(tls_edge: tuple[Edge, Path]) -> None:
    proxy, ca = tls_edge
    trusted = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(verify=trusted, timeout=5) as http:
        response = await http.get(f"https://localhost:{proxy.port}/v1/system/status")

    assert response.status_code == 200, response.text
    assert response.json()["overall"] == "HEALTHY"


async def test_grpc_over_tls_works(tls_edge: tuple[Edge, Path]) -> None:
    proxy, ca = tls_edge
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    async with grpc.aio.secure_channel(f"127.0.0.1:{proxy.port}", credentials) as channel:
        stub = system_service_pb2_grpc.SystemServiceStub(channel)
        reply = await stub.GetStatus(system_service_pb2.GetStatusRequest(), timeout=5)

    assert reply.overall == system_service_pb2.HEALTHY


async def test_the_client_speaks_tls_when_the_edge_does(
    tls_edge: tuple[Edge, Path], tmp_path: Path
) -> None:
    proxy, ca = tls_edge
    settings = MeshSettings(
        state_dir=tmp_path,
        envoy=EnvoySettings(port=proxy.port),
        edge=EdgeSettings(
            tls_cert_file=ca.parent / "edge.pem",
            tls_key_file=ca.parent / "edge-key.pem",
            tls_ca_file=ca,
        ),
    )
    async with MeshClient(settings, tokens=MemoryTokenStore()) as client:
        reply = await client.get_status()

    assert reply.overall == system_service_pb2.HEALTHY


async def test_plaintext_to_the_tls_port_fails(tls_edge: tuple[Edge, Path]) -> None:
    proxy, _ = tls_edge
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"http://127.0.0.1:{proxy.port}/v1/system/status")

    async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
        stub = system_service_pb2_grpc.SystemServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetStatus(system_service_pb2.GetStatusRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_an_untrusted_certificate_is_refused_by_clients(tls_edge: tuple[Edge, Path]) -> None:
    proxy, _ = tls_edge
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"https://localhost:{proxy.port}/v1/system/status")


async def test_the_gateway_refuses_a_plaintext_edge_off_loopback(tmp_path: Path) -> None:
    settings = MeshSettings(host="0.0.0.0", state_dir=tmp_path)

    with pytest.raises(ConfigurationError, match="SUTAZAI_EDGE__TLS_KEY_FILE"):
        await run_gateway(settings, metrics_port=-1)
