"""`sutazai status` against a stand-in for Envoy + system service (a local gRPC server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from sutazai.system.v1 import system_service_pb2_grpc
from sutazai.system.v1.system_service_pb2 import (
    ComponentKind,
    ComponentState,
    ComponentStatus,
    GetStatusRequest,
    GetStatusResponse,
    OverallState,
)
from tests.harness import free_ports
from tests.harness.cli import run_cli

pytestmark = pytest.mark.integration


def _response(overall: OverallState.ValueType) -> GetStatusResponse:
    healthy = overall == OverallState.HEALTHY
    redis_state = (
        ComponentState.COMPONENT_STATE_HEALTHY
        if healthy
        else ComponentState.COMPONENT_STATE_UNHEALTHY
    )
    response = GetStatusResponse(
        overall=overall,
        reported_by="system/abc123",
        components=[
            ComponentStatus(
                name="postgres",
                kind=ComponentKind.COMPONENT_KIND_INFRASTRUCTURE,
                state=ComponentState.COMPONENT_STATE_HEALTHY,
                address="127.0.0.1:10000",
                latency_ms=1.25,
            ),
            ComponentStatus(
                name="redis",
                kind=ComponentKind.COMPONENT_KIND_INFRASTRUCTURE,
                state=redis_state,
                address="127.0.0.1:10001",
                last_error="" if healthy else "connection refused",
            ),
        ],
    )
    response.checked_at.GetCurrentTime()
    return response


class StandIn(system_service_pb2_grpc.SystemServiceServicer):
    """Answers the scripted states in order, then keeps answering the last one."""

    def __init__(self) -> None:
        self.script: list[OverallState.ValueType] = [OverallState.HEALTHY]
        self.calls = 0

    async def GetStatus(  # noqa: N802
        self, request: GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> GetStatusResponse:
        state = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return _response(state)


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, int]]:
    servicer = StandIn()
    server = grpc.aio.server()
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(grace=None)


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {"SUTAZAI_STATE_DIR": str(tmp_path), "SUTAZAI_ENVOY__PORT": str(port)}


async def test_healthy_mesh_prints_a_table_and_exits_zero(
    stand_in: tuple[StandIn, int], tmp_path: Path
) -> None:
    _, port = stand_in
    run = await run_cli("status", env=_env(tmp_path, port))
    assert run.code == 0, run.stderr
    assert "healthy" in run.stdout
    assert "postgres" in run.stdout
    assert "system/abc123" in run.stdout


async def test_json_uses_proto_field_names(stand_in: tuple[StandIn, int], tmp_path: Path) -> None:
    _, port = stand_in
    run = await run_cli("status", "--json", env=_env(tmp_path, port))
    assert run.code == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["overall"] == "HEALTHY"
    assert document["reported_by"] == "system/abc123"
    assert document["components"][0]["latency_ms"] == 1.25


async def test_unhealthy_mesh_exits_one_and_says_why(
    stand_in: tuple[StandIn, int], tmp_path: Path
) -> None:
    servicer, port = stand_in
    servicer.script = [OverallState.CRITICAL]
    run = await run_cli("status", "--json", env=_env(tmp_path, port))
    assert run.code == 1
    assert json.loads(run.stdout)["overall"] == "CRITICAL"
    assert "not healthy: redis" in run.stderr


async def test_wait_polls_until_healthy(stand_in: tuple[StandIn, int], tmp_path: Path) -> None:
    servicer, port = stand_in
    servicer.script = [OverallState.DEGRADED, OverallState.DEGRADED, OverallState.HEALTHY]
    run = await run_cli("status", "--wait", "30", env=_env(tmp_path, port))
    assert run.code == 0, run.stderr
    assert servicer.calls == 3


async def test_unreachable_envoy_is_reported_without_a_traceback(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    run = await run_cli("status", "--wait", "1", env=_env(tmp_path, port))
    assert run.code == 1
    assert f"Envoy unreachable at 127.0.0.1:{port}" in run.stderr
    assert "Traceback" not in run.stderr
