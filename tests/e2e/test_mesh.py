"""The whole mesh, started by the real supervisor, driven through Envoy over gRPC and REST."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from sutazai.ops.supervisor import Supervisor
from sutazai.ops.supervisor.environment import child_environment
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.registry import Registry
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import envoy_admin_client
from sutazai.system.v1 import system_service_pb2 as pb
from sutazai.system.v1 import system_service_pb2_grpc as pb_grpc
from tests.harness import component_pid
from tests.harness.waiting import wait_for

CLUSTER = "sutazai.system.v1.SystemService"


class SignedIn:
    """A SystemService stub that sends the operator's token on every call."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self._stub = pb_grpc.SystemServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def status(self) -> pb.GetStatusResponse:
        return await self._stub.GetStatus(pb.GetStatusRequest(), timeout=5, metadata=self._metadata)


@pytest.fixture(scope="module")
async def edge(mesh_services: MeshSettings, operator_token: str) -> AsyncIterator[SignedIn]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        yield SignedIn(channel, operator_token)


@pytest.fixture(scope="module")
async def rest(
    mesh_services: MeshSettings, operator_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{mesh_services.envoy.port}"
    headers = {"authorization": f"Bearer {operator_token}"}
    async with httpx.AsyncClient(base_url=base, timeout=5, headers=headers) as client:
        yield client


async def healthy_status(edge: SignedIn) -> pb.GetStatusResponse:
    latest: list[pb.GetStatusResponse] = []

    async def healthy() -> bool:
        latest[:] = [await edge.status()]
        return latest[0].overall == pb.HEALTHY

    await wait_for(healthy, timeout=30, interval=0.2, message="mesh HEALTHY")
    return latest[0]


async def test_status_lists_every_component_over_grpc_and_rest(
    edge: SignedIn, rest: httpx.AsyncClient
) -> None:
    status = await healthy_status(edge)
    names = [c.name for c in status.components]
    assert names[:4] == ["envoy", "nats", "postgres", "redis"]
    assert any(name.startswith("system/") for name in names[4:])
    assert all(c.state == pb.COMPONENT_STATE_HEALTHY for c in status.components)
    assert all(c.latency_ms > 0 and c.since.seconds > 0 for c in status.components)

    reply = await rest.get("/v1/system/status")
    assert reply.status_code == 200
    body = reply.json()
    assert body["overall"] == "HEALTHY"
    async with httpx.AsyncClient(base_url=rest.base_url, timeout=5) as signed_out:
        anonymous = (await signed_out.get("/v1/system/status")).json()
    assert anonymous["overall"] == "HEALTHY"
    assert anonymous["components"] == []
    assert {"postgres", "redis", "nats", "envoy"} <= {c["name"] for c in body["components"]}
    assert {"latency_ms", "last_error", "since"} <= set(body["components"][0])


async def test_refresh_probes_now_and_filters(rest: httpx.AsyncClient) -> None:
    reply = await rest.post("/v1/system/status:refresh", json={"components": ["redis"]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [c["name"] for c in body["components"]] == ["redis"]
    assert body["overall"] in {"HEALTHY", "DEGRADED", "CRITICAL"}


async def test_rest_edge_answers_bad_input_clearly(rest: httpx.AsyncClient) -> None:
    assert (await rest.get("/v1/nowhere")).status_code == 404
    assert (await rest.get("/v1/system/status", params={"verbose": "1"})).status_code == 400

    malformed = await rest.post(
        "/v1/system/status:refresh",
        content=b'{"components": [',
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 400
    assert "Unexpected end of string" in malformed.text

    unknown_component = await rest.post(
        "/v1/system/status:refresh", json={"components": ["redis", "mongo"]}
    )
    assert unknown_component.status_code == 400
    error = unknown_component.json()
    assert error["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    (detail,) = error["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    (violation,) = detail["field_violations"]
    assert violation["field"] == "components[1]"
    assert "unknown component 'mongo'" in violation["description"]


async def test_unknown_method_through_envoy_is_unimplemented(
    mesh_services: MeshSettings, operator_token: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(f"/{CLUSTER}/Reboot")(
                b"", timeout=5, metadata=(("authorization", f"Bearer {operator_token}"),)
            )
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_stopped_redis_is_reported_then_recovers(
    infrastructure: Supervisor, edge: SignedIn
) -> None:
    await healthy_status(edge)
    pid = component_pid(infrastructure, "redis")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:

        async def redis_unhealthy() -> bool:
            status = await edge.status()
            redis = next(c for c in status.components if c.name == "redis")
            return redis.state == pb.COMPONENT_STATE_UNHEALTHY and status.overall == pb.CRITICAL

        await wait_for(redis_unhealthy, timeout=10, interval=0.2, message="redis reported down")
    finally:
        os.kill(pid, signal.SIGCONT)
    status = await healthy_status(edge)
    redis = next(c for c in status.components if c.name == "redis")
    assert redis.last_error == ""


async def envoy_hosts(admin: httpx.AsyncClient) -> dict[str, str]:
    """Each endpoint of the system cluster with its health flags, from Envoy's admin."""
    hosts = {}
    for line in (await admin.get("/clusters")).text.splitlines():
        if line.startswith(f"{CLUSTER}::") and "::health_flags::" in line:
            _, address, _, flags = line.split("::", 3)
            hosts[address] = flags
    return hosts


async def registered_sockets(settings: MeshSettings) -> set[str]:
    """The sockets of the system instances in the registry (where Envoy reaches them)."""
    nc = await connect_nats(settings, name="e2e")
    try:
        registry = await Registry.open(nc.jetstream(), settings.registry)
        return {i.socket_path for i in await registry.list() if i.service == "system"}
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def extra_instance(settings: MeshSettings) -> AsyncIterator[asyncio.subprocess.Process]:
    """`sutazai serve system`: one more instance joining the running mesh."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sutazai.ops.cli",
        "serve",
        "system",
        env=child_environment(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), timeout=10)


async def test_second_instance_joins_and_a_killed_one_fails_no_call(
    mesh_services: MeshSettings, edge: SignedIn
) -> None:
    settings = mesh_services
    before = await registered_sockets(settings)
    async with (
        envoy_admin_client(settings.envoy_admin_socket, timeout=5) as admin,
        extra_instance(settings) as process,
    ):
        new_sockets: set[str] = set()

        async def registered() -> bool:
            new_sockets.update(await registered_sockets(settings) - before)
            return bool(new_sockets)

        await wait_for(registered, timeout=60, interval=0.2, message="second instance registered")
        (address,) = new_sockets
        assert address.startswith(f"{settings.run_dir}/system.")

        async def in_envoy() -> bool:
            return (await envoy_hosts(admin)).get(address) == "healthy"

        await wait_for(in_envoy, timeout=5, interval=0.1, message="endpoint healthy in Envoy")

        failures: list[grpc.StatusCode] = []
        calls = 0
        stop = asyncio.Event()

        async def caller() -> None:
            nonlocal calls
            while not stop.is_set():
                try:
                    await edge.status()
                    calls += 1
                except grpc.aio.AioRpcError as exc:
                    failures.append(exc.code())

        callers = [asyncio.create_task(caller()) for _ in range(8)]
        try:
            await wait_for(lambda: calls >= 200, timeout=30, message="traffic flowing")
            process.send_signal(signal.SIGKILL)
            killed_at, calls_at_kill = time.monotonic(), calls

            async def gone() -> bool:
                return address not in await envoy_hosts(admin)

            await wait_for(gone, timeout=settings.registry.ttl_seconds + 15, interval=0.2)
            # Keep calling a little after removal too; the pace is whatever the mesh sustains.
            await wait_for(lambda: calls >= calls_at_kill + 500, timeout=30)
        finally:
            stop.set()
            await asyncio.gather(*callers)
        assert failures == []
        assert time.monotonic() > killed_at
