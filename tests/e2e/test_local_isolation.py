"""What another local user, or a service posing as another, can reach of the running mesh.

Envoy's admin interface, the gateway's ADS and each service's socket live in the 0700 run
directory; the gateway routes a gRPC service only to instances of the name that owns it; logs
are private.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import psutil
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from sutazai.ops.supervisor.components.envoy import bootstrap_path
from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.logfiles import log_path, logs_dir
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import envoy_admin_client, grpc_target, instance_socket
from tests.harness.other_user import OTHER_USER, connect_as
from tests.harness.waiting import wait_for

AUTH_SERVICE = "sutazai.auth.v1.AuthService"
SYSTEM_SERVICE = "sutazai.system.v1.SystemService"


def mesh_sockets(settings: MeshSettings) -> list[Path]:
    """Envoy admin, the gateway, and every service instance's socket."""
    sockets = [settings.envoy_admin_socket, settings.gateway_socket]
    sockets += sorted(p for p in settings.run_dir.glob("*.sock") if p not in sockets)
    return sockets


async def test_admin_ads_and_service_sockets_are_refused_to_other_users(
    mesh_services: MeshSettings,
) -> None:
    settings = mesh_services
    sockets = mesh_sockets(settings)
    assert {"auth", "system"} <= {p.name.split(".")[0] for p in sockets[2:]}

    run_dir = settings.run_dir.stat()
    assert stat.S_IMODE(run_dir.st_mode) == 0o700
    assert run_dir.st_uid == os.geteuid()
    for path in sockets:
        assert stat.S_ISSOCK(path.stat().st_mode), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    if os.geteuid() == 0:  # CI runs as root; it can be someone else
        assert connect_as(OTHER_USER, sockets) == ["EACCES"] * len(sockets)
    # The mesh's own user gets through: the sockets are live, not merely locked.
    async with envoy_admin_client(settings.envoy_admin_socket) as admin:
        assert (await admin.get("/ready")).text.strip() == "LIVE"


def listening_ports(process: psutil.Process) -> set[int]:
    return {
        c.laddr.port for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
    }


def child_processes(match: str) -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if match in " ".join(p.cmdline())]


def gateway_metrics_address(settings: MeshSettings) -> str:
    """Where the gateway serves Prometheus metrics (it logs the free port it picked)."""
    for line in log_path(settings.state_dir, "gateway").read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "gateway.metrics":
            return str(json.loads(line)["address"])
    raise AssertionError("the gateway logged no metrics address")


async def test_nothing_serves_admin_or_ads_on_tcp(mesh_services: MeshSettings) -> None:
    settings = mesh_services
    (envoy,) = child_processes(str(bootstrap_path(settings)))
    (gateway,) = [
        p
        for p in child_processes("sutazai.gateway")
        if p.environ().get("SUTAZAI_STATE_DIR") == str(settings.state_dir)
    ]
    metrics_port = int(gateway_metrics_address(settings).rpartition(":")[2])

    assert listening_ports(envoy) == {settings.envoy.port}, "the edge listener only"
    assert listening_ports(gateway) == {metrics_port}, "Prometheus metrics only"


def rejected(metrics_text: str, service: str, reason: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "sutazai_gateway_registry_rejected_total" and sample.labels == {
                "service": service,
                "reason": reason,
            }:
                return float(sample.value)
    return 0.0


async def cluster_endpoints(admin: httpx.AsyncClient, cluster: str) -> dict[str, str]:
    """``{endpoint: health flags}`` of one cluster, from Envoy's admin ``/clusters``."""
    hosts = {}
    for line in (await admin.get("/clusters")).text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and parts[2] == "health_flags":
            hosts[parts[1]] = parts[3]
    return hosts


@asynccontextmanager
async def serving_on(socket: Path, *services: str) -> AsyncIterator[None]:
    """A gRPC server on ``socket`` that reports ``services`` SERVING to Envoy's checks."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    assert server.add_insecure_port(grpc_target(socket)) != 0
    await server.start()
    for name in services:
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    try:
        yield
    finally:
        await server.stop(0)


async def test_a_service_cannot_claim_another_services_grpc_service(
    mesh_services: MeshSettings,
) -> None:
    settings = mesh_services
    thief_id = f"thief{uuid.uuid4().hex[:6]}"
    socket = instance_socket(settings.run_dir, "system", thief_id)
    thief = ServiceInstance(
        service="system",
        instance_id=thief_id,
        host=settings.host,
        socket_path=str(socket),
        grpc_services=[SYSTEM_SERVICE, AUTH_SERVICE],
    )
    metrics_url = f"http://{gateway_metrics_address(settings)}/metrics"
    # Written with the system principal's own NATS credentials, as a compromised system
    # service would.
    nc = await connect_nats(settings.as_principal("system"), name="thief")
    try:
        registry = await Registry.open(nc.jetstream(), settings.registry)
        async with (
            httpx.AsyncClient(timeout=5) as http,
            envoy_admin_client(settings.envoy_admin_socket) as admin,
            serving_on(socket, SYSTEM_SERVICE, AUTH_SERVICE),
        ):
            before = rejected((await http.get(metrics_url)).text, "system", "not_owner")
            await registry.put(thief)
            try:

                async def counted() -> bool:
                    text = (await http.get(metrics_url)).text
                    return rejected(text, "system", "not_owner") > before

                async def routed_as_system() -> bool:
                    endpoints = await cluster_endpoints(admin, SYSTEM_SERVICE)
                    return endpoints.get(str(socket)) == "healthy"

                await wait_for(counted, timeout=10, message="the gateway counted the refusal")
                # What system owns still routes: Envoy has the snapshot built from the entry...
                await wait_for(routed_as_system, timeout=15, message="thief healthy as system")
                # ...and AuthService has its real instance only.
                auth_endpoints = await cluster_endpoints(admin, AUTH_SERVICE)
                assert str(socket) not in auth_endpoints
                assert [Path(p).name.split(".")[0] for p in auth_endpoints] == ["auth"]
            finally:
                await registry.remove(thief)
    finally:
        await nc.close()


async def test_logs_are_private(mesh_services: MeshSettings) -> None:
    directory = logs_dir(mesh_services.state_dir)
    envoy_log = log_path(mesh_services.state_dir, "envoy")
    async with httpx.AsyncClient(timeout=5) as http:
        await http.get(f"http://127.0.0.1:{mesh_services.envoy.port}/v1/system/status")
    # Envoy's access log (usernames, client addresses) goes to its component log.
    await wait_for(
        lambda: '"event":"envoy.access"' in envoy_log.read_text(),
        timeout=10,
        message="access log line written",
    )
    logs = sorted(directory.glob("*.log"))

    assert {"envoy.log", "gateway.log", "system.log"} <= {p.name for p in logs}
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in logs} == {p.name: 0o600 for p in logs}
