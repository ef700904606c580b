"""The system service's watch streams through Envoy, over gRPC and REST (NDJSON), on the mesh."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import httpx
import pytest

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1 import auth_service_pb2_grpc as auth_grpc
from sutazai.runtime.messaging import connect_nats
from sutazai.runtime.registry import Registry, instance_label
from sutazai.runtime.settings import MeshSettings
from sutazai.runtime.sockets import envoy_admin_client
from sutazai.system.v1 import system_service_pb2 as pb
from sutazai.system.v1 import system_service_pb2_grpc as pb_grpc
from tests.harness.waiting import wait_for

AUTH_CLUSTER = "sutazai.auth.v1.AuthService"
KILL_REPORTED_WITHIN = 5.0
"""The must-show bound: a SIGKILLed instance's row turns unhealthy this fast."""

M = TypeVar("M")


@pytest.fixture
async def channel(mesh_services: MeshSettings) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh_services.envoy.port}") as edge:
        yield edge


@pytest.fixture
def signed_in(operator_token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {operator_token}"),)


async def first_matching(
    stream: AsyncIterator[M], matches: Callable[[M], bool], *, within: float, what: str
) -> M:
    """The first message of ``stream`` that ``matches``, read for at most ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            async for message in stream:
                if matches(message):
                    return message
    except TimeoutError:
        pytest.fail(f"no {what} within {within:g}s")
    pytest.fail(f"the stream ended before {what}")


def auth_rows(status: pb.WatchStatusResponse) -> dict[str, int]:
    return {c.name: c.state for c in status.components if c.name.startswith("auth/")}


async def test_watch_status_streams_every_probe_round(
    channel: grpc.aio.Channel, signed_in: tuple[tuple[str, str], ...]
) -> None:
    stub = pb_grpc.SystemServiceStub(channel)
    call = stub.WatchStatus(pb.WatchStatusRequest(), metadata=signed_in)
    try:
        first = await first_matching(call, lambda _: True, within=5, what="a first round")
        later = await first_matching(
            call,
            lambda m: m.checked_at.ToDatetime() > first.checked_at.ToDatetime(),
            within=10,
            what="a later round",
        )
    finally:
        call.cancel()

    names = [c.name for c in later.components]
    assert names[:4] == ["envoy", "nats", "postgres", "redis"]
    assert any(n.startswith("system/") for n in names)
    assert any(n.startswith("auth/") for n in names)
    assert later.reported_by.startswith("system/")


async def test_anonymous_status_watchers_see_the_overall_state_only(
    channel: grpc.aio.Channel,
) -> None:
    call = pb_grpc.SystemServiceStub(channel).WatchStatus(pb.WatchStatusRequest())
    try:
        message = await first_matching(call, lambda _: True, within=5, what="a round")
    finally:
        call.cancel()

    assert message.overall != pb.OVERALL_STATE_UNSPECIFIED
    assert list(message.components) == []


@pytest.mark.parametrize(
    ("method", "request_type"),
    [("WatchTraffic", pb.WatchTrafficRequest), ("WatchServices", pb.WatchServicesRequest)],
)
async def test_traffic_and_services_need_a_signed_in_caller(
    channel: grpc.aio.Channel, mesh_services: MeshSettings, method: str, request_type: Any
) -> None:
    call = getattr(pb_grpc.SystemServiceStub(channel), method)(request_type(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in call:
            pass
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    path = {"WatchTraffic": "traffic", "WatchServices": "services"}[method]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh_services.envoy.port}") as rest:
        assert (await rest.get(f"/v1/system/{path}:watch")).status_code == 401


@pytest.mark.parametrize("path", ["status", "traffic", "services"])
async def test_rest_watch_streams_newline_delimited_json(
    mesh_services: MeshSettings, operator_token: str, path: str
) -> None:
    base = f"http://127.0.0.1:{mesh_services.envoy.port}"
    headers = {"authorization": f"Bearer {operator_token}"}
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as rest,
        rest.stream("GET", f"/v1/system/{path}:watch") as reply,
    ):
        assert reply.status_code == 200
        async with asyncio.timeout(10):
            line = await anext(aiter(reply.aiter_lines()))
    message = json.loads(line)

    expected = {
        "status": {"overall", "components", "checked_at", "reported_by"},
        "traffic": {"sampled_at", "edge", "services"},
        "services": {"observed_at", "services"},
    }[path]
    assert expected <= set(message)


async def test_traffic_shows_request_and_client_error_rates_of_auth(
    channel: grpc.aio.Channel, signed_in: tuple[tuple[str, str], ...]
) -> None:
    auth = auth_grpc.AuthServiceStub(channel)
    call = pb_grpc.SystemServiceStub(channel).WatchTraffic(
        pb.WatchTrafficRequest(), metadata=signed_in
    )

    async def calls() -> None:
        # Good calls and INVALID_ARGUMENT ones, until the stream has seen both.
        while True:
            await auth.GetMe(auth_pb.GetMeRequest(), metadata=signed_in, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await auth.Login(auth_pb.LoginRequest(username="", password=""), timeout=5)
            assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    def auth_busy(sample: pb.WatchTrafficResponse) -> bool:
        figures = next(s.figures for s in sample.services if s.service == "auth")
        # Latency comes from Envoy's histograms, which lag the counters by up to a stats flush
        # (1 s): a window can count requests before their latencies are merged in.
        return (
            figures.requests_per_second > 0 and figures.client_error_rate > 0 and figures.p50_ms > 0
        )

    caller = asyncio.create_task(calls())
    try:
        sample = await first_matching(call, auth_busy, within=20, what="auth traffic")
    finally:
        call.cancel()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller

    assert sample.window_seconds > 0
    auth_traffic = next(s for s in sample.services if s.service == "auth")
    assert auth_traffic.grpc_service == AUTH_CLUSTER
    assert 0 < auth_traffic.figures.client_error_rate < 1
    assert auth_traffic.figures.error_rate == 0
    assert auth_traffic.figures.requests_total >= 2
    assert auth_traffic.figures.p99_ms >= auth_traffic.figures.p50_ms > 0
    assert sample.edge.requests_per_second > 0


async def test_traffic_shows_the_http_routes_of_the_inference_service(
    mesh_services: MeshSettings,
    channel: grpc.aio.Channel,
    signed_in: tuple[tuple[str, str], ...],
    operator_token: str,
) -> None:
    call = pb_grpc.SystemServiceStub(channel).WatchTraffic(
        pb.WatchTrafficRequest(), metadata=signed_in
    )

    async def calls(api: httpx.AsyncClient) -> None:
        # Model lists (200) and completions with a bad body (400), until the stream saw both.
        while True:
            assert (await api.get("/models")).status_code == 200
            assert (await api.post("/chat/completions", json={"model": 5})).status_code == 400

    def openai_busy(sample: pb.WatchTrafficResponse) -> bool:
        routes = [s for s in sample.services if list(s.http_prefixes) == ["/openai/"]]
        return bool(routes) and (
            routes[0].figures.requests_per_second > 0 and routes[0].figures.client_error_rate > 0
        )

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{mesh_services.envoy.port}/openai/v1",
        headers={"authorization": f"Bearer {operator_token}"},
        timeout=10,
    ) as api:
        caller = asyncio.create_task(calls(api))
        try:
            sample = await first_matching(call, openai_busy, within=20, what="/openai/ traffic")
        finally:
            call.cancel()
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller

    routes = next(s for s in sample.services if s.http_prefixes)
    assert (routes.service, routes.grpc_service) == ("inference", "")
    assert 0 < routes.figures.client_error_rate < 1
    assert routes.figures.error_rate == 0
    assert routes.figures.requests_total >= 2
    # Beside it, the inference service's gRPC row.
    assert "sutazai.inference.v1.InferenceService" in {s.grpc_service for s in sample.services}


async def services_view_where(
    channel: grpc.aio.Channel,
    signed_in: tuple[tuple[str, str], ...],
    matches: Callable[[pb.WatchServicesResponse], bool],
    what: str,
) -> pb.WatchServicesResponse:
    """The first services view that ``matches``, within 30 s."""
    call = pb_grpc.SystemServiceStub(channel).WatchServices(
        pb.WatchServicesRequest(), metadata=signed_in
    )
    try:
        return await first_matching(call, matches, within=30, what=what)
    finally:
        call.cancel()


async def test_services_view_lists_each_service_with_a_healthy_instance(
    channel: grpc.aio.Channel, signed_in: tuple[tuple[str, str], ...]
) -> None:
    def settled(view: pb.WatchServicesResponse) -> bool:
        wanted = {s.name: s for s in view.services if s.name in {"system", "auth"}}
        return len(wanted) == 2 and all(
            len(s.instances) == 1
            and s.instances[0].state == pb.COMPONENT_STATE_HEALTHY
            and [e.health for e in s.instances[0].endpoints] == [pb.ENDPOINT_HEALTH_HEALTHY]
            for s in wanted.values()
        )

    view = await services_view_where(channel, signed_in, settled, "a settled services view")

    by_name = {s.name: s for s in view.services}
    auth = by_name["auth"]
    assert list(auth.grpc_services) == [AUTH_CLUSTER]
    assert auth.desired_instances == 1
    (instance,) = auth.instances
    assert instance.address.endswith(f"auth.{instance.instance_id}.sock")
    assert instance.pid > 0
    assert instance.version
    assert instance.started_at.seconds > 0
    assert instance.heartbeat_at.seconds >= instance.started_at.seconds
    assert instance.endpoints[0].grpc_service == AUTH_CLUSTER


async def test_services_view_shows_envoys_view_of_an_instances_http_socket(
    channel: grpc.aio.Channel, signed_in: tuple[tuple[str, str], ...]
) -> None:
    def http_endpoint(view: pb.WatchServicesResponse) -> bool:
        return any(
            e.http_prefixes and e.health == pb.ENDPOINT_HEALTH_HEALTHY
            for s in view.services
            if s.name == "inference"
            for i in s.instances
            for e in i.endpoints
        )

    view = await services_view_where(channel, signed_in, http_endpoint, "inference's endpoints")

    (inference,) = [s for s in view.services if s.name == "inference"]
    endpoints = inference.instances[0].endpoints
    assert [(e.grpc_service, list(e.http_prefixes)) for e in endpoints] == [
        ("", ["/openai/"]),
        ("sutazai.inference.v1.InferenceService", []),
    ]


async def auth_pid(settings: MeshSettings) -> tuple[str, int]:
    nc = await connect_nats(settings, name="test-streams")
    try:
        registry = await Registry.open(nc.jetstream(), settings.registry)
        (auth,) = [i for i in await registry.list() if i.service == "auth"]
    finally:
        await nc.close()
    return instance_label(auth.service, auth.instance_id), auth.pid


async def envoy_routes_to_auth(settings: MeshSettings) -> None:
    async with envoy_admin_client(settings.envoy_admin_socket) as admin:

        async def healthy() -> bool:
            lines = (await admin.get("/clusters")).text.splitlines()
            return f"{AUTH_CLUSTER}::" in "\n".join(lines) and any(
                line.startswith(f"{AUTH_CLUSTER}::") and line.endswith("::health_flags::healthy")
                for line in lines
            )

        await wait_for(healthy, timeout=60, interval=0.1, message="auth healthy in Envoy")


async def test_a_killed_instance_turns_its_row_unhealthy_then_the_same_row_recovers(
    channel: grpc.aio.Channel,
    mesh_services: MeshSettings,
    signed_in: tuple[tuple[str, str], ...],
) -> None:
    label, pid = await auth_pid(mesh_services)
    call = pb_grpc.SystemServiceStub(channel).WatchStatus(
        pb.WatchStatusRequest(), metadata=signed_in
    )
    try:
        await first_matching(
            call,
            lambda m: auth_rows(m).get(label) == pb.COMPONENT_STATE_HEALTHY,
            within=10,
            what=f"{label} healthy",
        )
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        await first_matching(
            call,
            lambda m: auth_rows(m).get(label) == pb.COMPONENT_STATE_UNHEALTHY,
            within=KILL_REPORTED_WITHIN,
            what=f"{label} unhealthy after SIGKILL",
        )
        reported = time.monotonic() - killed
        recovered = await first_matching(
            call,
            lambda m: auth_rows(m).get(label) == pb.COMPONENT_STATE_HEALTHY,
            within=60,
            what=f"{label} healthy again after the restart",
        )
    finally:
        call.cancel()
        await envoy_routes_to_auth(mesh_services)

    assert reported <= KILL_REPORTED_WITHIN
    # The restarted process took over the same row: no second auth row, no leftover.
    assert list(auth_rows(recovered)) == [label]
    new_label, new_pid = await auth_pid(mesh_services)
    assert (new_label, new_pid != pid) == (label, True)
