"""Followed streams against a stand-in edge (a real grpc.aio server on a free loopback port).

The stand-in serves ``SystemService`` (and ``AuthService.Refresh`` where a test needs the
session renewed); the client reaches it as it reaches Envoy, through ``settings.envoy.port``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from sutazai.auth.v1 import auth_service_pb2 as auth_pb
from sutazai.auth.v1 import auth_service_pb2_grpc as auth_grpc
from sutazai.client import (
    CallFailed,
    ConnectionState,
    MemoryTokenStore,
    MeshClient,
    MeshUnavailable,
    SessionEnded,
    SessionTokens,
)
from sutazai.runtime.settings import EnvoySettings, MeshSettings
from sutazai.system.v1 import system_service_pb2 as pb
from sutazai.system.v1 import system_service_pb2_grpc as pb_grpc
from tests.harness import free_ports, wait_for

pytestmark = pytest.mark.integration

DEADLINE = 10.0


class StandIn(pb_grpc.SystemServiceServicer):
    """Streams that send one message per call, then wait; records what the client did."""

    def __init__(self) -> None:
        self.opened = 0
        self.cancelled = asyncio.Event()
        self.tokens_seen: list[str] = []
        self.log_requests: list[pb.TailLogsRequest] = []

    async def WatchStatus(  # noqa: N802
        self, request: pb.WatchStatusRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchStatusResponse]:
        self.opened += 1
        try:
            yield pb.WatchStatusResponse(reported_by=f"stand-in/{self.opened}")
            await asyncio.Event().wait()  # until the call ends
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def WatchTraffic(  # noqa: N802
        self, request: pb.WatchTrafficRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchTrafficResponse]:
        token = dict(context.invocation_metadata() or ()).get("authorization", "")
        self.tokens_seen.append(str(token))
        if token != "Bearer fresh":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token revoked")
        yield pb.WatchTrafficResponse(window_seconds=5)

    async def WatchServices(  # noqa: N802
        self, request: pb.WatchServicesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchServicesResponse]:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "operators only")
        yield pb.WatchServicesResponse()  # pragma: no cover - abort raises

    async def TailLogs(  # noqa: N802
        self, request: pb.TailLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.TailLogsResponse]:
        self.log_requests.append(request)
        yield pb.TailLogsResponse()  # a keep-alive: never shown
        yield pb.TailLogsResponse(lines=[pb.LogLine(text=f"line of call {len(self.log_requests)}")])
        if len(self.log_requests) == 1:
            return  # the stream ends: a follower reconnects
        await asyncio.Event().wait()


class Refresher(auth_grpc.AuthServiceServicer):
    """``Refresh`` that rotates ``old`` into ``fresh`` once, and refuses anything else."""

    def __init__(self) -> None:
        self.refreshes = 0

    async def Refresh(  # noqa: N802
        self, request: auth_pb.RefreshRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb.RefreshResponse:
        self.refreshes += 1
        if request.refresh_token != "old-refresh":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "refresh token reused")
        return auth_pb.RefreshResponse(
            access_token="fresh", refresh_token="new-refresh", expires_in=900
        )


async def serve(system: StandIn, auth: Refresher, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    pb_grpc.add_SystemServiceServicer_to_server(system, server)
    auth_grpc.add_AuthServiceServicer_to_server(auth, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


@pytest.fixture
async def edge() -> AsyncIterator[tuple[StandIn, Refresher, int]]:
    system, auth = StandIn(), Refresher()
    server, port = await serve(system, auth)
    try:
        yield system, auth, port
    finally:
        await server.stop(grace=None)


def settings_for(tmp_path: Path, port: int) -> MeshSettings:
    return MeshSettings(state_dir=tmp_path, envoy=EnvoySettings(port=port))


def signed_in(access_token: str = "stale") -> MemoryTokenStore:  # noqa: S107
    expires_at = datetime.now(UTC) + timedelta(minutes=10)
    return MemoryTokenStore(SessionTokens(access_token, "old-refresh", expires_at))


def seen(states: list[ConnectionState], check: Callable[[ConnectionState], bool]) -> bool:
    return any(check(state) for state in states)


async def test_a_stream_survives_the_server_going_away(tmp_path: Path) -> None:
    system, auth = StandIn(), Refresher()
    server, port = await serve(system, auth)
    states: list[ConnectionState] = []
    try:
        async with MeshClient(settings_for(tmp_path, port), tokens=MemoryTokenStore()) as client:
            client.on_connection_change(states.append)
            stream = client.watch_status()
            first = await asyncio.wait_for(anext(stream), DEADLINE)
            assert first.reported_by == "stand-in/1"
            assert states == []

            following = asyncio.ensure_future(anext(stream))
            await server.stop(grace=None)
            await wait_for(
                lambda: seen(states, lambda s: not s.connected),
                timeout=DEADLINE,
                message="the client reports the loss",
            )
            lost = states[0]
            assert lost.retry_in is not None
            assert lost.retry_in > 0
            assert f"127.0.0.1:{port}" in lost.detail
            assert not following.done()

            server, _ = await serve(system, auth, port)  # the same port: the edge is back
            again = await asyncio.wait_for(following, DEADLINE * 3)
            assert again.reported_by.startswith("stand-in/")
            assert again.reported_by != "stand-in/1"
            assert states[-1] == ConnectionState(connected=True)
            assert all(not s.connected for s in states[:-1])
            await stream.aclose()
    finally:
        await server.stop(grace=None)


async def test_closing_the_iterator_cancels_the_rpc(
    edge: tuple[StandIn, Refresher, int], tmp_path: Path
) -> None:
    system, _, port = edge
    async with MeshClient(settings_for(tmp_path, port), tokens=MemoryTokenStore()) as client:
        stream = client.watch_status()
        await asyncio.wait_for(anext(stream), DEADLINE)
        assert not system.cancelled.is_set()
        await stream.aclose()
        await asyncio.wait_for(system.cancelled.wait(), DEADLINE)


async def test_cancelling_the_reading_task_cancels_the_rpc(
    edge: tuple[StandIn, Refresher, int], tmp_path: Path
) -> None:
    system, _, port = edge
    received = asyncio.Event()

    async def read(client: MeshClient) -> None:
        async for _ in client.watch_status():
            received.set()

    async with MeshClient(settings_for(tmp_path, port), tokens=MemoryTokenStore()) as client:
        reader = asyncio.create_task(read(client))
        await asyncio.wait_for(received.wait(), DEADLINE)
        reader.cancel()
        await asyncio.wait_for(system.cancelled.wait(), DEADLINE)
        with pytest.raises(asyncio.CancelledError):
            await reader


async def test_a_refused_token_is_renewed_once_and_the_stream_opened_again(
    edge: tuple[StandIn, Refresher, int], tmp_path: Path
) -> None:
    system, auth, port = edge
    store = signed_in()
    async with MeshClient(settings_for(tmp_path, port), tokens=store) as client:
        stream = client.watch_traffic()
        sample = await asyncio.wait_for(anext(stream), DEADLINE)
        await stream.aclose()
    assert sample.window_seconds == 5
    assert system.tokens_seen == ["Bearer stale", "Bearer fresh"]
    assert auth.refreshes == 1
    saved = store.load()
    assert saved is not None
    assert saved.refresh_token == "new-refresh"


async def test_a_refused_renewal_ends_the_session(
    edge: tuple[StandIn, Refresher, int], tmp_path: Path
) -> None:
    _, auth, port = edge
    store = MemoryTokenStore(
        SessionTokens("stale", "spent-refresh", datetime.now(UTC) + timedelta(minutes=10))
    )
    async with MeshClient(settings_for(tmp_path, port), tokens=store) as client:
        with pytest.raises(SessionEnded):
            await asyncio.wait_for(anext(client.watch_traffic()), DEADLINE)
    assert auth.refreshes == 1
    assert store.load() is None


async def test_a_stream_without_a_session_ends_at_once(
    edge: tuple[StandIn, Refresher, int], tmp_path: Path
) -> None:
    _, _, port = edge
    async with MeshClient(settings_for(tmp_path, port), tokens=MemoryTokenStore()) as client:
        with pytest.raises(SessionEnded, match="not signed in"):
            await anext(client.watch_traffic())


async def test_another_refusal_is_a_call_failed(
    edge: tuple[StandIn, Refresher, int], tmp_path: Path
) -> None:
    _, _, port = edge
    async with MeshClient(settings_for(tmp_path, port), tokens=signed_in("fresh")) as client:
        with pytest.raises(CallFailed) as failed:
            await asyncio.wait_for(anext(client.watch_services()), DEADLINE)
    assert failed.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert failed.value.details == "operators only"


async def test_tail_logs_skips_keep_alives_and_resumes_without_old_lines(
    edge: tuple[StandIn, Refresher, int], tmp_path: Path
) -> None:
    system, _, port = edge
    states: list[ConnectionState] = []
    async with MeshClient(settings_for(tmp_path, port), tokens=signed_in("fresh")) as client:
        client.on_connection_change(states.append)
        stream = client.tail_logs("auth", lines=50, contains="x")
        first = await asyncio.wait_for(anext(stream), DEADLINE)
        second = await asyncio.wait_for(anext(stream), DEADLINE)
        await stream.aclose()
    assert [line.text for line in first] == ["line of call 1"]
    assert [line.text for line in second] == ["line of call 2"]
    assert [(r.lines, r.follow, r.contains) for r in system.log_requests] == [
        (50, True, "x"),
        (0, True, "x"),
    ]
    assert states[0].connected is False
    assert "ended" in states[0].detail
    assert states[-1] == ConnectionState(connected=True)


async def test_an_unreachable_edge_is_reported_and_raised(tmp_path: Path) -> None:
    (edge_port,) = free_ports(1)
    states: list[ConnectionState] = []
    async with MeshClient(settings_for(tmp_path, edge_port), tokens=MemoryTokenStore()) as client:
        client.on_connection_change(states.append)
        with pytest.raises(MeshUnavailable, match=f"Envoy unreachable at 127.0.0.1:{edge_port}"):
            await client.get_status()
    assert [s.connected for s in states] == [False]
