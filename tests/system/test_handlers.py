"""The watch RPCs' handlers, called directly: the stream limit and what anonymous callers see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest

from sutazai.runtime.faults import RpcStatusError
from sutazai.runtime.registry import Registry
from sutazai.runtime.stream_slots import StreamSlots
from sutazai.services.system.domain import Kind, ProbeOutcome, StatusBoard
from sutazai.services.system.handlers import SystemHandlers
from sutazai.services.system.log_reader import LogReader
from sutazai.services.system.prober import Prober
from sutazai.services.system.samplers import InventoryWatch, TrafficSampler
from sutazai.system.v1 import system_service_pb2 as pb

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Caller:
    """The little of a servicer context the handlers read: who is calling from where."""

    def __init__(self, address: str) -> None:
        self._address = address

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-sutazai-client-address", self._address),)

    def peer(self) -> str:
        return "unix:"  # Envoy, which names the client in the metadata


def calling_from(address: str) -> grpc.aio.ServicerContext:
    return cast(grpc.aio.ServicerContext, Caller(address))


NO_CONTEXT = calling_from("192.0.2.1")


def handlers(
    board: StatusBoard, streams: int, per_caller: int = 16, state_dir: Path = Path("/nonexistent")
) -> SystemHandlers:
    # Nothing here reaches Envoy or the registry: the samplers are never run.
    admin = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(500)))
    return SystemHandlers(
        board,
        Prober([], board, interval=1.0),
        reporter="system/000000000000",
        traffic=TrafficSampler(admin, (), edge_stat_prefix="edge", interval=1.0),
        inventory=InventoryWatch(board, cast(Registry, None), admin, admin, []),
        streams=StreamSlots(streams, per_caller),
        logs=LogReader(state_dir),
    )


def probed_board() -> StatusBoard:
    board = StatusBoard()
    board.apply_round([ProbeOutcome("redis", Kind.INFRASTRUCTURE, "x", True, 1.0, T0)], T0)
    return board


async def first(stream: AsyncIterator[Any]) -> Any:
    async for message in stream:
        return message
    raise AssertionError("the stream ended without a message")


async def test_watchers_past_the_limit_are_refused_until_one_leaves() -> None:
    board = probed_board()
    system = handlers(board, streams=1)
    open_stream = system.WatchStatus(pb.WatchStatusRequest(), NO_CONTEXT)
    await first(open_stream)

    with pytest.raises(RpcStatusError) as refused:
        await first(system.WatchTraffic(pb.WatchTrafficRequest(), NO_CONTEXT))
    assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1 per instance" in str(refused.value)

    await open_stream.aclose()
    assert board.watchers == 0
    assert (await first(system.WatchStatus(pb.WatchStatusRequest(), NO_CONTEXT))).overall


async def test_log_tails_and_watches_share_the_stream_slots(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "auth.log").write_text("a line\n")
    system = handlers(probed_board(), streams=1, state_dir=tmp_path)
    held = system.WatchStatus(pb.WatchStatusRequest(), NO_CONTEXT)
    await first(held)

    with pytest.raises(RpcStatusError) as refused:
        await first(system.TailLogs(pb.TailLogsRequest(component="auth"), NO_CONTEXT))
    assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED

    await held.aclose()
    tail = await first(system.TailLogs(pb.TailLogsRequest(component="auth"), NO_CONTEXT))
    assert [line.text for line in tail.lines] == ["a line"]


async def test_one_anonymous_address_cannot_take_every_stream() -> None:
    system = handlers(probed_board(), streams=10, per_caller=1)
    held = system.WatchStatus(pb.WatchStatusRequest(), calling_from("192.0.2.7"))
    await first(held)

    with pytest.raises(RpcStatusError) as refused:
        await first(system.WatchStatus(pb.WatchStatusRequest(), calling_from("192.0.2.7")))
    assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1 per caller" in str(refused.value)
    assert await first(system.WatchStatus(pb.WatchStatusRequest(), calling_from("192.0.2.8")))
    await held.aclose()


async def test_anonymous_status_watchers_get_the_overall_state_only() -> None:
    system = handlers(probed_board(), streams=4)

    message = await first(system.WatchStatus(pb.WatchStatusRequest(), NO_CONTEXT))

    assert message.overall == pb.HEALTHY
    assert list(message.components) == []
    assert message.reported_by == "system/000000000000"


async def test_status_watchers_end_when_the_board_closes() -> None:
    board = probed_board()
    system = handlers(board, streams=4)
    stream = system.WatchStatus(pb.WatchStatusRequest(), NO_CONTEXT)
    await first(stream)

    board.close()

    assert [m async for m in stream] == []
