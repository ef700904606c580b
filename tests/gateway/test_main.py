"""`python -m sutazai.gateway` as the supervisor runs it: settings from env, SIGTERM to stop."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import uuid
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client

from sutazai.registry.v1.registry_pb2 import ServiceInstance
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings, RegistrySettings
from sutazai.runtime.sockets import grpc_target
from tests.gateway.processes import read_log, start_process, stop_process
from tests.gateway.tokens import KeyRingFile
from tests.harness.mesh import free_ports
from tests.harness.waiting import wait_for

SYSTEM_SERVICE = "sutazai.system.v1.SystemService"
SERVING = health_pb2.HealthCheckResponse.SERVING


async def test_gateway_process_serves_follows_the_registry_and_stops_on_sigterm(
    nats_url: str, nats_client: Client, tmp_path: Path
) -> None:
    (envoy_port,) = free_ports(1)
    bucket = f"main_{uuid.uuid4().hex[:8]}"
    # Where the supervisor puts them in the state dir; the gateway needs the public keys only.
    KeyRingFile(tmp_path / "jwt_keys.json").path.unlink()
    env = gateway_env(tmp_path, nats_url, envoy_port) | {
        "SUTAZAI_REGISTRY__BUCKET": bucket,
        "SUTAZAI_GATEWAY__METRICS_PORT": "-1",
    }
    log = tmp_path / "gateway.log"
    socket = MeshSettings(state_dir=tmp_path).gateway_socket
    process = start_process([sys.executable, "-m", "sutazai.gateway"], log=log, env=env)
    try:
        async with grpc.aio.insecure_channel(grpc_target(socket)) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status(service: str) -> int | None:
                if process.poll() is not None:
                    raise RuntimeError(f"gateway exited: {read_log(log)}")
                try:
                    request = health_pb2.HealthCheckRequest(service=service)
                    response = await health.Check(request, timeout=1)
                except grpc.aio.AioRpcError:
                    return None
                return int(response.status)

            async def serving(service: str) -> bool:
                return bool(await status(service) == SERVING)

            await wait_for(lambda: serving(""), timeout=30, message="gateway serving")
            assert await status(SYSTEM_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
            # ADS is on the private socket only: no TCP listener at all (metrics are off here).
            assert stat.S_IMODE(socket.parent.stat().st_mode) == 0o700
            assert stat.S_IMODE(socket.stat().st_mode) == 0o600
            listening = [
                c
                for c in psutil.Process(process.pid).net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            ]
            assert listening == []

            registry = await Registry.open(
                nats_client.jetstream(), RegistrySettings(bucket=bucket, ttl_seconds=300)
            )
            await registry.put(
                ServiceInstance(
                    service="system",
                    instance_id="a",
                    host="127.0.0.1",
                    port=5001,
                    grpc_services=[SYSTEM_SERVICE],
                )
            )
            await wait_for(lambda: serving(SYSTEM_SERVICE), timeout=10, message="registry seen")

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, read_log(log)
    finally:
        stop_process(process)

    events = [json.loads(line)["event"] for line in read_log(log).splitlines() if line]
    assert "gateway.started" in events
    assert "registry.synced" in events
    assert events[-1] == "gateway.stopped"


def test_gateway_process_without_public_keys_exits_with_a_clear_error(
    nats_url: str, tmp_path: Path
) -> None:
    (envoy_port,) = free_ports(1)
    log = tmp_path / "gateway.log"
    env = gateway_env(tmp_path, nats_url, envoy_port)

    process = start_process([sys.executable, "-m", "sutazai.gateway"], log=log, env=env)
    try:
        assert process.wait(timeout=30) == 2, read_log(log)
    finally:
        stop_process(process)

    (line,) = [json.loads(line) for line in read_log(log).splitlines() if line]
    assert line["event"] == "gateway.misconfigured"
    assert str(tmp_path / "jwks.json") in line["error"]


def gateway_env(state_dir: Path, nats_url: str, envoy_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "SUTAZAI_STATE_DIR": str(state_dir),
        "SUTAZAI_HOST": "127.0.0.1",
        "SUTAZAI_NATS__URL": nats_url,
        "SUTAZAI_ENVOY__PORT": str(envoy_port),
    }
